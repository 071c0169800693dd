//! Runs the built `consentctl` binary on the shipped files and on small inputs written by
//! the tests, and checks what it prints and how it exits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_consentctl");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("consentctl starts");
    {
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("consentctl ends");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn repo_file(rel: &str) -> String {
    repo().join(rel).to_string_lossy().into_owned()
}

/// Writes `text` to a file of this test run and returns its path.
fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("consentctl-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn demo_consents() -> Value {
    let text = std::fs::read_to_string(repo().join("envoy-config/demo-consents.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The demo's plugin configuration (envoy-config/envoy-demo.yaml) with the demo consents
/// inline instead of the live snapshot.
fn demo_inline_config(name: &str) -> String {
    let consents = demo_consents();
    let config = json!({
        "pseudonymisation_key": "demo-only-key-change-me-0123456789",
        "caller": { "from": "peer_certificate", "unidentified_party": "tsunagu" },
        "gpc": { "enabled": true, "third_party_provision": true, "purposes": ["marketing.third_party_offers"] },
        "routes": [
            { "name": "ward-statistics", "match": { "route_name": "stats" },
              "purposes": ["joint.ebpm", "marketing.analysis"], "require_user": false }
        ],
        "body": { "subjects": [{ "elements": "$.items[*]", "subject": "$.user_id" }] },
        "consents": { "version": consents["version"], "records": consents["records"] }
    });
    temp_file(name, &config.to_string())
}

fn assert_no_demo_user(run: &Run) {
    for user in ["u-alice", "u-bob", "u-carol"] {
        assert!(
            !run.stdout.contains(user),
            "stdout names {user}:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(user),
            "stderr names {user}:\n{}",
            run.stderr
        );
    }
}

fn line_of(file: &str, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in file")
        + 1
}

/// Fails unless the run exited with `code`, showing what it printed.
fn assert_exit(r: &Run, code: i32) {
    assert_eq!(r.code, code, "{}{}", r.stdout, r.stderr);
}

/// Fails unless `line` is one whole line of the run's stdout.
fn assert_line(r: &Run, line: &str) {
    assert!(
        r.stdout.lines().any(|l| l == line),
        "no line {line:?} in:\n{}",
        r.stdout
    );
}

/// Fails unless the run's stdout contains `text`.
fn assert_stdout_has(r: &Run, text: &str) {
    assert!(r.stdout.contains(text), "{text:?} not in:\n{}", r.stdout);
}

/// Fails unless the run's stderr contains `text`.
fn assert_stderr_has(r: &Run, text: &str) {
    assert!(r.stderr.contains(text), "{text:?} not in:\n{}", r.stderr);
}

/// The run's stdout as JSON.
fn json_out(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap()
}

/// `consentctl explain --config CONFIG --user USER --purpose PURPOSE` and then `extra`.
fn explain(config: &str, user: &str, purpose: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "explain",
        "--config",
        config,
        "--user",
        user,
        "--purpose",
        purpose,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn the_shipped_envoy_yaml_is_valid_and_its_alias_is_reported_once() {
    let yaml = repo_file("envoy-config/envoy-demo.yaml");
    let r = run(&["validate", "envoy", &yaml]);
    assert_exit(&r, 0);
    let anchor = line_of(&yaml, "configuration: &consent_plugin_configuration");
    let alias = line_of(&yaml, "configuration: *consent_plugin_configuration");
    assert_stdout_has(&r, "1 plugin configuration valid");
    assert_stdout_has(
        &r,
        &format!(
            "line {anchor}: configuration &consent_plugin_configuration (JSON on lines {}-",
            anchor + 3
        ),
    );
    assert_stdout_has(&r, "valid: policy saitama-minna-app version 1, 18 purposes, 21 categories, 4 parties, 1 route rule, snapshot shared");
    assert_stdout_has(
        &r,
        &format!(
            "line {alias}: configuration *consent_plugin_configuration: reuses the configuration of line {anchor}"
        ),
    );
    assert_eq!(r.stdout.matches("valid: policy").count(), 1);
}

#[test]
fn an_envoy_yaml_with_a_broken_configuration_fails_with_its_yaml_line() {
    let yaml = "\
static_resources:
  listeners:
  - name: x
    typed_config:
      configuration:
        \"@type\": type.googleapis.com/google.protobuf.StringValue
        value: |
          {
            \"require_user\": true,
            \"gpc\": { \"purposes\": [\"marketing.campains\"] }
          }
";
    let path = temp_file("broken.yaml", yaml);
    let r = run(&["validate", "envoy", &path]);
    assert_exit(&r, 1);
    assert_stdout_has(
        &r,
        "line 5: configuration (JSON on lines 8-11): INVALID: gpc.purposes[0]: unknown purpose",
    );
    let syntax = temp_file("syntax.yaml", &yaml.replace("true,", "true"));
    let r = run(&["validate", "envoy", &syntax]);
    assert_exit(&r, 1);
    assert_stdout_has(&r, "at YAML line 10");
}

#[test]
fn a_typo_in_a_configuration_names_the_field_and_never_the_user() {
    let config = r#"{"consents": {"records": [{"subject": "u-secret-4711", "grants": {"marketing.campains": {"policy_version": 1}}}]}}"#;
    let path = temp_file("typo.json", config);
    for r in [
        run(&["validate", "config", &path]),
        run_with_stdin(&["validate", "config", "-"], Some(config)),
    ] {
        assert_exit(&r, 1);
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            "consentctl: invalid plugin configuration: consents.records[0].grants.marketing.campains: unknown purpose `marketing.campains`\n"
        );
        assert!(!r.stderr.contains("u-secret-4711"));
    }
    let wrong_type = temp_file(
        "type.json",
        r#"{"consents": {"records": [{"subject": "u-secret-4711", "stop_use": "u-secret-4711"}]}}"#,
    );
    let r = run(&["validate", "config", &wrong_type]);
    assert_exit(&r, 1);
    assert_stderr_has(&r, "consents.records[0].stop_use");
    assert!(!r.stderr.contains("u-secret-4711"), "{}", r.stderr);
    let key = temp_file("key.json", r#"{"require_usr": false}"#);
    let r = run(&["validate", "config", &key]);
    assert_stderr_has(&r, "unknown field `require_usr`");
}

#[test]
fn a_valid_configuration_prints_a_summary() {
    let path = demo_inline_config("summary.json");
    let r = run(&["validate", "config", &path]);
    assert_exit(&r, 0);
    assert_line(&r, "policy       saitama-minna-app version 1");
    assert_line(&r, "purposes     18");
    assert_line(&r, "route rules  1 besides the default rule");
    assert_line(&r, "snapshot     inline (3 records, version 1)");
    assert!(
        !r.stdout.contains("demo-only-key"),
        "the key is never printed"
    );
    assert_no_demo_user(&r);
}

#[test]
fn the_demo_consents_are_a_valid_snapshot_and_only_counts_are_printed() {
    let r = run(&[
        "validate",
        "snapshot",
        &repo_file("envoy-config/demo-consents.json"),
    ]);
    assert_exit(&r, 0);
    assert_line(&r, "records           3");
    assert_line(&r, "stop use          1");
    assert_line(&r, "grants            4 (marketing.newsletters 2, security.crime_prevention 1, service.improvement 1)");
    assert_eq!(r.stderr, "");
    assert_no_demo_user(&r);
}

#[test]
fn unknown_ids_in_a_snapshot_are_warnings_and_duplicates_are_errors() {
    let mut doc = demo_consents();
    doc["records"][1]["grants"] = json!({"marketing.campains": {"policy_version": 1}});
    let path = temp_file("unknown.json", &doc.to_string());
    let r = run(&["validate", "snapshot", &path]);
    assert_exit(&r, 0);
    assert_stderr_has(&r, "warning: snapshot.records[1].grants.marketing.campains: unknown purpose `marketing.campains` (the live snapshot skips it");
    assert_stdout_has(&r, "records           3");

    let mut doc = demo_consents();
    doc["records"][2]["subject"] = json!("u-alice");
    let path = temp_file("duplicate.json", &doc.to_string());
    let r = run(&["validate", "snapshot", &path]);
    assert_exit(&r, 1);
    assert_eq!(
        r.stderr,
        "consentctl: invalid consent snapshot: snapshot.records[2].subject: the same subject appears in an earlier record\n"
    );
    assert_no_demo_user(&r);
}

#[test]
fn a_snapshot_is_checked_against_the_configuration_s_keying() {
    let config = temp_file(
        "hmac.json",
        r#"{"snapshot": {"subject_key": "hmac_sha256", "subject_key_secret": "0123456789abcdef-key"}}"#,
    );
    let r = run(&[
        "validate",
        "snapshot",
        &repo_file("envoy-config/demo-consents.json"),
        "--config",
        &config,
    ]);
    assert_exit(&r, 1);
    assert_stderr_has(
        &r,
        "snapshot.subject_key: the snapshot's subject keying differs",
    );
}

#[test]
fn explain_bob_surveys_blocks_with_consent_missing() {
    let config = demo_inline_config("bob.json");
    let r = explain(&config, "u-bob", "surveys", &[]);
    assert_exit(&r, 2);
    assert_eq!(r.stdout.lines().next(), Some("outcome  block"));
    assert_line(
        &r,
        "reason   consent_missing: the person has not consented to this purpose",
    );
    assert_line(
        &r,
        "         basis consent, §3(1)ア④, terms last changed in version 1, not joint use",
    );
    assert_line(
        &r,
        "party    tsunagu (operator), identified by: no identity; caller.unidentified_party",
    );
    assert_no_demo_user(&r);

    let r = explain(&config, "u-bob", "surveys", &["--json"]);
    assert_exit(&r, 2);
    let v = json_out(&r);
    assert_eq!(v["outcome"], "block");
    assert_eq!(v["reason"], "consent_missing");
    assert_eq!(v["mode"], "enforce");
    assert_eq!(v["purpose"]["section"], "§3(1)ア④");
    assert_eq!(v["consent"]["record"], true);
    assert_eq!(v["consent"]["grant_version"], Value::Null);
    assert_no_demo_user(&r);
}

#[test]
fn explain_shows_dry_run_mode_and_keeps_the_decision_s_exit_code() {
    let path = demo_inline_config("dry-base.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    config["dry_run"] = json!(true);
    let config = temp_file("dry.json", &config.to_string());
    let r = explain(&config, "u-bob", "surveys", &[]);
    assert_exit(&r, 2);
    assert_line(
        &r,
        "mode     dry_run: the filter records this decision and passes the request unchanged",
    );
    assert!(
        !r.stdout.contains("\nreply "),
        "no block reply in dry-run: {}",
        r.stdout
    );
    let v = json_out(&explain(&config, "u-bob", "surveys", &["--json"]));
    assert_eq!(
        (&v["mode"], &v["reason"]),
        (&json!("dry_run"), &json!("consent_missing"))
    );
}

#[test]
fn explain_a_body_shows_the_gps_path_and_why_gps_was_coarsened() {
    let config = demo_inline_config("gps.json");
    let body = temp_file(
        "body.json",
        r#"{"email":"b@example.jp","gps":{"lat":35.8617,"lng":139.6455},"note":"hi"}"#,
    );
    let purpose = "service.improvement";
    let r = explain(&config, "u-bob", purpose, &["--body", &body]);
    assert_exit(&r, 0);
    assert_line(&r, "location.gps        explicit_grant_missing   coarsen    the person has not explicitly granted this category for this purpose");
    assert_line(&r, "$.gps    location.gps  coarsened");
    assert_line(&r, "$.email  email         removed");
    assert!(
        !r.stdout.contains("b@example.jp"),
        "no body value without --json-out"
    );

    let r = explain(
        &config,
        "u-bob",
        purpose,
        &["--body", &body, "--json", "--json-out"],
    );
    assert_exit(&r, 0);
    let v = json_out(&r);
    assert_eq!(v["outcome"], "redact");
    assert_eq!(v["body"]["result"], "rewritten");
    assert!(
        v["body"]["fields"]
            .as_array()
            .unwrap()
            .contains(&json!({"path": "$.gps", "category": "location.gps", "action": "coarsened"})),
        "{v}"
    );
    assert_eq!(
        v["body"]["redacted"],
        json!({"gps": {"lat": 35.86, "lng": 139.65}, "note": "hi"})
    );
}

#[test]
fn explain_reads_a_form_body_and_says_when_a_body_passes_unread() {
    let config = demo_inline_config("form.json");
    let body = temp_file("form.txt", "email=b%40example.jp&lat=35.8617&note=hi");
    let form = [
        "--body",
        body.as_str(),
        "--content-type",
        "application/x-www-form-urlencoded",
    ];
    let r = explain(&config, "u-bob", "service.improvement", &form);
    assert_exit(&r, 0);
    assert_line(&r, "form:email  email         removed");
    assert_line(&r, "form:lat    location.gps  coarsened");
    assert!(
        !r.stdout.contains("b@example.jp"),
        "no body value without --json-out"
    );
    let text = temp_file("text.txt", "just text");
    let plain = ["--body", text.as_str(), "--content-type", "text/plain"];
    let r = explain(&config, "u-bob", "service.improvement", &plain);
    assert_exit(&r, 0);
    assert!(r.stdout.contains("passed unread"), "{}", r.stdout);
    let two = [
        "--body",
        text.as_str(),
        "--content-type",
        "application/json, application/x-www-form-urlencoded",
    ];
    let r = explain(&config, "u-bob", "service.improvement", &two);
    assert_exit(&r, 2);
    assert!(
        r.stdout.contains("refused with body_type_ambiguous"),
        "{}",
        r.stdout
    );
}

#[test]
fn explain_with_a_snapshot_looks_the_user_up_like_the_filter() {
    let yaml = repo_file("envoy-config/envoy-demo.yaml");
    let snapshot = repo_file("envoy-config/demo-consents.json");
    let explain_json = |user: &str| {
        let r = explain(
            &yaml,
            user,
            "service.improvement",
            &["--snapshot", &snapshot, "--json"],
        );
        (r.code, json_out(&r))
    };
    let (code, alice) = explain_json("u-alice");
    assert_eq!(code, 0);
    assert_eq!(alice["reason"], "notice_basis");
    let removed: Vec<&str> = alice["redactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["category"].as_str())
        .collect();
    assert!(
        !removed.contains(&"location.gps"),
        "alice granted GPS: {removed:?}"
    );
    assert!(removed.contains(&"location.wifi"), "{removed:?}");
    let (code, carol) = explain_json("u-carol");
    assert_eq!(code, 2);
    assert_eq!(carol["reason"], "use_stopped");
    assert_eq!(carol["consent"]["stop_use"], true);
}

#[test]
fn explain_a_list_body_decides_each_element_for_its_own_person() {
    let config = demo_inline_config("list-config.json");
    let body = temp_file(
        "list-body.json",
        r#"{"items":[{"user_id":"u-alice","email":"a@example.jp"},{"user_id":"u-carol","email":"c@example.jp"}]}"#,
    );
    let r = explain(
        &config,
        "u-alice",
        "marketing.newsletters",
        &["--body", &body, "--json-out"],
    );
    assert_exit(&r, 0);
    assert_line(&r, "$.items[1]  -         element dropped");
    assert!(
        r.stdout.contains("a@example.jp"),
        "alice's element stays: {}",
        r.stdout
    );
    assert!(!r.stdout.contains("c@example.jp"), "{}", r.stdout);
}

#[test]
fn explain_a_third_party_caller_needs_consent_to_provision() {
    let config = demo_inline_config("third.json");
    let purpose = "marketing.newsletters";
    let r = explain(
        &config,
        "u-alice",
        purpose,
        &["--uri-san", "spiffe://ads.example/x"],
    );
    assert_exit(&r, 2);
    assert_line(&r, "reason   third_party_consent_missing: the person has not consented to provision of their data to third parties");
    assert_line(
        &r,
        "party    - (third_party), identified by: no identity, or one no party claims",
    );
    assert_line(
        &r,
        "consent  record found; grant for the purpose: version 1; consent to provision: none",
    );
    let r = explain(
        &config,
        "u-alice",
        purpose,
        &[
            "--uri-san",
            "spiffe://minna-app.example/ns/tsunagu/sa/api",
            "--json",
        ],
    );
    assert_exit(&r, 0);
    assert_eq!(
        json_out(&r)["party"],
        json!({"id": "tsunagu", "kind": "operator", "via": "uri_san"})
    );
}

#[test]
fn policy_prints_japanese_and_english_labels_in_aligned_tables() {
    let r = run(&["policy"]);
    assert_exit(&r, 0);
    assert_stdout_has(&r, "さいたま市");
    assert_stdout_has(&r, "Saitama City");
    let city = r
        .stdout
        .lines()
        .find(|l| l.starts_with("saitama-city "))
        .expect("a saitama-city row");
    assert!(city.contains("joint_user  JP       さいたま市"), "{city}");
    assert!(city.contains("cluster:saitama-city"), "{city}");
    // The label column starts at the same display column in the header and in every row.
    let header = r
        .stdout
        .lines()
        .find(|l| l.starts_with("id ") && l.contains("identities"))
        .unwrap();
    let column = header.find("label (ja)").unwrap();
    let before_label = |l: &str| {
        l.chars()
            .take_while(|c| !('\u{3000}'..='\u{9fff}').contains(c))
            .count()
    };
    assert_eq!(before_label(city), column, "{header}\n{city}");
    assert!(r.stdout.contains(
        "third-party provision (§7): consent to `third_party.provision` is consent to provision; third parties may receive only: name, birth_date, gender, address, phone, email"
    ));
    let en = run(&["policy", "--lang", "en"]);
    assert!(!en.stdout.contains("さいたま市"));
    assert!(en.stdout.contains("Saitama City (joint user)"));
}

#[test]
fn help_and_bad_arguments() {
    let r = run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r
        .stdout
        .contains("consentctl explain --config CFG --purpose P"));
    assert!(r
        .stdout
        .contains("2 explain: the filter would block the request"));
    let r = run(&["explain", "--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("--json-out"));
    let r = run(&[
        "explain",
        "--config",
        "c.json",
        "--purpose",
        "p",
        "--usr",
        "u-secret",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "consentctl: error: unexpected argument '--usr' found; a similar one exists: '--user' (see `consentctl explain --help`)\n"
    );
    assert!(!r.stderr.contains("u-secret"));
    assert_eq!(r.stdout, "");
    let r = run(&["validate", "config", "/nonexistent/consentctl.json"]);
    assert_eq!(r.code, 1);
    assert!(r
        .stderr
        .starts_with("consentctl: cannot read /nonexistent/consentctl.json:"));
    assert_eq!(r.stderr.lines().count(), 1);
}

#[test]
fn grpc_descriptors_rebuilds_the_committed_set_and_validate_config_compiles_it() {
    let out = temp_file("profile.descriptor.binpb", "");
    let proto_path = repo_file("envoy-config/grpc");
    let r = run(&[
        "grpc",
        "descriptors",
        "--proto-path",
        &proto_path,
        "saitama/v1/profile.proto",
        "-o",
        &out,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("7 message types, 3 methods"),
        "{}",
        r.stderr
    );
    let built = std::fs::read(&out).unwrap();
    let committed =
        std::fs::read(repo().join("envoy-config/grpc/profile.descriptor.binpb")).unwrap();
    assert!(
        built == committed,
        "envoy-config/grpc/profile.descriptor.binpb is out of date with profile.proto: rebuild it with \
         consentctl grpc descriptors --proto-path envoy-config/grpc saitama/v1/profile.proto -o envoy-config/grpc/profile.descriptor.binpb"
    );

    let printed = run(&[
        "grpc",
        "descriptors",
        "-I",
        &proto_path,
        "saitama/v1/profile.proto",
        "--base64",
    ]);
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let config = json!({"grpc": {"descriptor_set": printed.stdout.trim()}}).to_string();
    let path = temp_file("grpc-config.json", &config);
    let v = run(&["validate", "config", &path]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(
        v.stdout
            .contains("grpc         7 message types, 3 methods; unknown methods refused"),
        "{}",
        v.stdout
    );

    // A qualified selector the descriptors lack is the filter's own error, naming the field.
    let mut policy: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("envoy-config/policy/saitama-minna-app.json"))
            .unwrap(),
    )
    .unwrap();
    policy["categories"][5]["protobuf"] = json!(["saitama.v1.Profile.e_mail"]);
    let config = json!({"policy": policy, "grpc": {"descriptor_set": printed.stdout.trim()}});
    let path = temp_file("grpc-typo.json", &config.to_string());
    let bad = run(&["validate", "config", &path]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains(
            "policy.categories[5].protobuf[0]: message `saitama.v1.Profile` has no field `e_mail`"
        ),
        "{}",
        bad.stderr
    );

    for (args, says) in [
        (vec!["saitama/v1/profile.proto"], "--base64"),
        (vec!["nope.proto", "--base64"], "cannot compile"),
    ] {
        let mut line = vec!["grpc", "descriptors", "-I", &proto_path];
        line.extend(args);
        let r = run(&line);
        assert_eq!(r.code, 1, "{line:?}");
        assert!(r.stderr.contains(says), "{line:?}: {}", r.stderr);
    }
}
