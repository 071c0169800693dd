//! The disclosure page in a real browser: Debian's Chromium, headless, renders the page of
//! a person with consents, a withdrawal, a rights request and provisions to three
//! recipients. The rendered DOM (`--dump-dom`) must hold the provision rows with the
//! policy's labels, and the screenshot (`--screenshot`) must be a real page: the window's
//! size and not blank (decoded, its pixels vary).
//!
//! Without /usr/bin/chromium the test says so and passes, unless `CI` or
//! `CONSENT_REQUIRE_BROWSER` is set (`make test-unit` installs Chromium and sets the
//! latter). `UPDATE_DOCS_SCREENSHOT=1` also writes the screenshot to
//! docs/disclosure-report.png, the README's picture.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{call, temp_dir};
use consent_core::live::SubjectKeying;
use consent_source::{Options, Source};

const CHROMIUM: &str = "/usr/bin/chromium";
const KEY: &str = "disclosure-page-ledger-key-0123";
/// 2026-03-16 01:30 UTC = 10:30 Japan time: the page's issue date.
const NOW: u64 = 1_773_624_600_000;
const DAY: u64 = 86_400_000;

fn browser_available() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("CONSENT_REQUIRE_BROWSER").is_some_and(|v| !v.is_empty());
    assert!(
        !required,
        "{CHROMIUM} is missing (make chromium installs Debian's package)"
    );
    eprintln!("SKIPPED: {CHROMIUM} is missing (make chromium installs it)");
    false
}

/// Runs headless Chromium with `extra` on `url`; returns its stdout.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

fn record(
    i: usize,
    ts: u64,
    who: (&str, &str, &str),
    purpose: &str,
    cats: &[&str],
    outcome: &str,
) -> serde_json::Value {
    let (recipient, kind, identity) = who;
    serde_json::json!({
        "request_id": format!("req-{i}"),
        "ts_ms": ts,
        "recipient": recipient,
        "recipient_kind": kind,
        "recipient_identity": identity,
        "purpose": purpose,
        "basis": if outcome == "block" { "consent" } else { "notice" },
        "categories": cats,
        "subject": SubjectKeying::Hmac(KEY.as_bytes().to_vec()).subject_for("u-hanako"),
        "outcome": outcome,
        "reason": if outcome == "block" { "third_party_stopped" } else { "notice_basis" },
    })
}

/// A source (demo loopback access, so the browser needs no token) holding u-hanako.
fn seeded_source() -> (Source, u16) {
    let options = Options {
        ledger_key: Some(KEY.as_bytes().to_vec()),
        clock: Arc::new(|| NOW),
        ..Options::demo()
    };
    let source = Source::start("127.0.0.1:0", Path::new(":memory:"), None, options).unwrap();
    let port = source.port().unwrap();
    for (method, path, body) in [
        ("PUT", "/users/u-hanako/grants/marketing.newsletters", ""),
        (
            "PUT",
            "/users/u-hanako/grants/service.improvement",
            "{\"explicit\": [\"location.gps\"]}",
        ),
        ("DELETE", "/users/u-hanako/grants/surveys", ""),
        ("PUT", "/users/u-hanako/stop-third-party", ""),
    ] {
        let r = call(port, method, path, &[], body.as_bytes());
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
    }
    let city = (
        "saitama-city",
        "joint_user",
        "spiffe://minna-app.example/ns/saitama-city/sa/ebpm",
    );
    let aeon = (
        "aeon-financial-service",
        "joint_user",
        "cluster:aeon-financial-service",
    );
    let felica = (
        "felica-pocket-marketing",
        "processor",
        "spiffe://minna-app.example/ns/felica-pocket-marketing/sa/mailer",
    );
    let ads = ("-", "third_party", "spiffe://ads.example/ns/offers/sa/api");
    let mut records = Vec::new();
    for d in 0..10 {
        records.push(record(
            records.len(),
            NOW - (40 - 3 * d) * DAY,
            city,
            "joint.ebpm",
            &["birth_date", "gender", "address"],
            "redact",
        ));
    }
    for d in [25, 6] {
        records.push(record(
            records.len(),
            NOW - d * DAY,
            aeon,
            "joint.administrative_services",
            &["name", "payment.date", "payment.amount"],
            "allow",
        ));
    }
    records.push(record(
        records.len(),
        NOW - 2 * DAY,
        felica,
        "outsourced.operations",
        &["email"],
        "redact",
    ));
    for d in [4, 1] {
        records.push(record(
            records.len(),
            NOW - d * DAY,
            ads,
            "marketing.third_party_offers",
            &[],
            "block",
        ));
    }
    let body = serde_json::to_vec(&serde_json::json!({ "records": records })).unwrap();
    let r = call(port, "POST", "/ledger", &[], &body);
    assert_eq!(r.json()["stored"], 15, "{}", r.text());
    (source, port)
}

/// Mean and variance of the luminance of an 8-bit RGB or RGBA PNG, and its size.
fn png_stats(path: &Path) -> (u32, u32, f64, f64, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    let pixels = &buf[..info.buffer_size()];
    let (mut sum, mut sum_sq, mut dark, mut n) = (0f64, 0f64, 0f64, 0f64);
    for px in pixels.chunks_exact(channels) {
        let y = 0.299 * f64::from(px[0]) + 0.587 * f64::from(px[1]) + 0.114 * f64::from(px[2]);
        sum += y;
        sum_sq += y * y;
        if y < 128.0 {
            dark += 1.0;
        }
        n += 1.0;
    }
    let mean = sum / n;
    (
        info.width,
        info.height,
        mean,
        sum_sq / n - mean * mean,
        dark / n,
    )
}

#[test]
fn the_disclosure_page_renders_the_provisions_in_chromium() {
    if !browser_available() {
        return;
    }
    let (_source, port) = seeded_source();
    let dir = temp_dir("disclosure-browser");
    let url = format!("http://127.0.0.1:{port}/users/u-hanako/disclosure?format=html&lang=both");

    // What the browser built from the page.
    let dom = chromium(&dir.join("profile-dom"), &["--dump-dom"], &url);
    assert!(dom.contains("<html lang=\"ja\">"), "{dom}");
    let rows: Vec<&str> = dom.split("<tr class=\"provision\"").skip(1).collect();
    assert_eq!(rows.len(), 3, "{dom}");
    for (recipient, ja, en, purpose, count, categories) in [
        (
            "aeon-financial-service",
            "イオンフィナンシャルサービス株式会社",
            "AEON Financial Service Co., Ltd. (joint user)",
            "本アプリを活用した行政サービスを提供するため",
            2,
            "氏名",
        ),
        (
            "felica-pocket-marketing",
            "フェリカポケットマーケティング株式会社",
            "FeliCa Pocket Marketing Inc.",
            "受託業務",
            1,
            "電子メールアドレス",
        ),
        (
            "saitama-city",
            "さいたま市",
            "Saitama City (joint user)",
            "証拠に基づく政策立案（EBPM）を行うため",
            10,
            "生年月日",
        ),
    ] {
        let row = rows
            .iter()
            .find(|r| r.contains(&format!("data-recipient=\"{recipient}\"")))
            .unwrap_or_else(|| panic!("no row for {recipient}: {dom}"));
        let row = &row[..row.find("</tr>").unwrap()];
        for needle in [ja, en, purpose, categories] {
            assert!(
                row.contains(needle),
                "{recipient}: {needle} missing in {row}"
            );
        }
        assert!(
            row.contains(&format!("<td class=\"n\">{count}</td>")),
            "{row}"
        );
    }
    let city = rows.iter().find(|r| r.contains("saitama-city")).unwrap();
    assert!(
        city.contains("2026-02-04 10:30") && city.contains("2026-03-03 10:30"),
        "{city}"
    );
    assert_eq!(dom.matches("<tr class=\"refused-row\"").count(), 1, "{dom}");
    assert!(
        dom.contains("GPS位置情報") && dom.contains("アンケートの送付"),
        "{dom}"
    );
    assert!(
        dom.contains("data-right=\"stop_third_party\" data-on=\"true\""),
        "{dom}"
    );
    assert!(dom.contains("<code id=\"user\">u-hanako</code>"), "{dom}");

    // The picture.
    let shot = dir.join("disclosure-report.png");
    chromium(
        &dir.join("profile-shot"),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let bytes = std::fs::metadata(&shot).unwrap().len();
    assert!(
        bytes > 50_000,
        "a {bytes}-byte screenshot is too small for this page"
    );
    let (width, height, mean, variance, dark) = png_stats(&shot);
    assert_eq!((width, height), (1200, 1600));
    // Mostly white paper with text and table rules: bright on average, but far from one
    // colour, with a few percent of dark (text) pixels.
    assert!(mean > 180.0 && mean < 254.0, "mean luminance {mean}");
    assert!(
        variance > 300.0,
        "luminance variance {variance}: a blank page?"
    );
    assert!(dark > 0.01 && dark < 0.5, "dark pixels {dark}");
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("disclosure-report.png");
    std::fs::copy(&shot, &kept).unwrap();
    eprintln!("screenshot: {} ({bytes} bytes)", kept.display());
    if std::env::var_os("UPDATE_DOCS_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/disclosure-report.png");
        std::fs::copy(&shot, &docs).unwrap();
        eprintln!("updated {}", docs.display());
    }

    // A hostile user ID is text in the browser, never markup.
    let hostile = format!(
        "http://127.0.0.1:{port}/users/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E/disclosure?format=html"
    );
    let dom = chromium(&dir.join("profile-hostile"), &["--dump-dom"], &hostile);
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_blank_png_fails_the_pixel_check() {
    // The check itself can fail: a white 1200x1600 PNG has no variance.
    let dir = temp_dir("blank-png");
    let path = dir.join("blank.png");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 1200, 1600);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_image_data(&vec![255u8; 1200 * 1600 * 3])
            .unwrap();
    }
    let (_, _, mean, variance, dark) = png_stats(&path);
    assert!(mean > 254.0 && variance < 1.0 && dark == 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
