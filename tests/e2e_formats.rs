//! End to end through real Envoy: every body format a backend may parse, and the other
//! places data travels. Form and multipart bodies, JSON sent under another label, bodies
//! the filter cannot read (passed and said to be unread, or refused), cookies both ways,
//! and `;` as a query separator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{map_plugin_config, send, start_demo, Req};

use support::shipped_demo as fixture;

/// Bob's purpose: email and phone are not in it (removed), GPS has no grant (coarsened),
/// device ids are allowed.
const BOB: (&str, &str) = ("u-bob", "service.improvement");

fn decision_of(seen: &consent_tools::demo_backend::SeenRequest) -> String {
    seen.header("x-consent-decision")
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_form_body_loses_forbidden_parameters_and_keeps_every_other_byte() {
    let body = "email=b%40example.jp&lat=35.8617&note=hi+there&device_id=dev-1&Phone=048";
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        "lat=35.86&note=hi+there&device_id=dev-1",
        "email and phone removed, the position coarsened"
    );
    let decision = decision_of(&seen);
    assert!(!decision.contains("body=unread"), "{decision}");
}

#[test]
fn a_multipart_body_loses_forbidden_fields_and_its_json_parts_are_redacted() {
    let boundary = "XyZ123";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nb@example.jp\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"profile\"\r\nContent-Type: application/json\r\n\r\n\
         {{\"phone\":\"048-000\",\"device_id\":\"dev-1\"}}\r\n\
         --{b}--\r\n",
        b = boundary
    );
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header(
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = String::from_utf8_lossy(&seen.expect("reached the backend").body).into_owned();
    assert!(
        !text.contains("example.jp") && !text.contains("048-000"),
        "{text}"
    );
    assert!(text.contains("name=\"note\"\r\n\r\nhello\r\n"), "{text}");
    assert!(text.contains("{\"device_id\":\"dev-1\"}"), "{text}");
}

#[test]
fn json_sent_under_another_label_is_enforced_as_json() {
    for label in ["text/plain", "application/octet-stream"] {
        let (resp, seen) = send(
            fixture(),
            Req::get("/echo")
                .who(BOB.0, BOB.1)
                .header("content-type", label)
                .body(r#"{"email":"b@example.jp","note":"hi"}"#),
        );
        assert_eq!(resp.status, 200, "{label}: {}", resp.text());
        let seen = seen.expect("reached the backend");
        assert_eq!(
            String::from_utf8_lossy(&seen.body),
            r#"{"note":"hi"}"#,
            "{label}"
        );
    }
}

#[test]
fn an_unreadable_body_passes_said_to_be_unread() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "text/plain")
            .body("email: b@example.jp"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    assert_eq!(String::from_utf8_lossy(&seen.body), "email: b@example.jp");
    let decision = decision_of(&seen);
    assert!(decision.ends_with("; body=unread"), "{decision}");
    // A body that was read says nothing of the kind.
    let (_, seen) = send(
        fixture(),
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "text/plain")
            .body(r#"{"note":"hi"}"#),
    );
    assert!(!decision_of(&seen.unwrap()).contains("body=unread"));
}

#[test]
fn with_unparsed_block_an_unreadable_body_is_refused() {
    let f = start_demo(|yaml| {
        map_plugin_config(yaml, |json| {
            json.replace("\"unparsed\": \"pass\"", "\"unparsed\": \"block\"")
        })
    });
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "text/plain")
            .body("email: b@example.jp"),
    );
    assert!(seen.is_none(), "the backend saw it");
    assert_eq!(resp.status, 415, "{}", resp.text());
    assert_eq!(resp.json()["reason"], "body_unreadable");
    // JSON under another label is still read, not refused.
    let (resp, _) = send(
        &f,
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "text/plain")
            .body(r#"{"note":"hi"}"#),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn a_body_declaring_two_formats_is_refused() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo")
            .who(BOB.0, BOB.1)
            .header("content-type", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=b%40example.jp"),
    );
    assert!(seen.is_none(), "the backend saw it");
    assert_eq!(resp.status, 415, "{}", resp.text());
    assert_eq!(resp.json()["reason"], "body_type_ambiguous");
}

#[test]
fn forbidden_cookies_go_one_by_one_and_sessions_stay() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/cookies")
            .who(BOB.0, BOB.1)
            .header(
                "cookie",
                "session=s-1; last_location=35.8617,139.6455; _ga=GA1.2",
            )
            .header("cookie", "geo=35.86,139.64"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    let cookies: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    let all = cookies.join("; ");
    assert!(all.contains("session=s-1"), "{all}");
    assert!(
        all.contains("_ga=GA1.2"),
        "cookie ids are allowed for this purpose: {all}"
    );
    assert!(
        !all.contains("last_location") && !all.contains("geo="),
        "{all}"
    );
    // The response: location and (for newsletters) analytics cookies are not set.
    let (resp, _) = send(
        fixture(),
        Req::get("/cookies").who("u-alice", "marketing.newsletters"),
    );
    let set: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("session=s-123")),
        "{set:?}"
    );
    assert!(
        set.iter().all(|c| !c.starts_with("last_location")
            && !c.starts_with("_ga")
            && !c.starts_with("minna_device")),
        "{set:?}"
    );
}

#[test]
fn a_semicolon_separates_query_parameters_too() {
    let (resp, seen) = send(
        fixture(),
        Req::get("/echo?page=2;lat=35.86;lng=139.64&sort=asc").who(BOB.0, BOB.1),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.expect("reached the backend");
    assert_eq!(seen.path, "/echo?page=2&sort=asc", "{}", seen.path);
}
