//! End to end: a consent source that wants credentials. The fetcher inside Envoy reads
//! snapshots and deltas with a bearer token its Envoy cluster adds (an upstream
//! `header_mutation` filter on the `consent_source` cluster: dispatch_http_call goes
//! through it); writes need the writer's token; without the token nothing loads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use support::{curl, send, start_demo_on_source, start_source_with, wait_until, Fixture, Req};

const ADMIN_TOKEN: &str = "e2e-admin-token-6f1c0a";
const FETCHER_TOKEN: &str = "e2e-fetcher-token-93b2d7";

/// A source that lets nobody in without a token: `admin` writes, `sidecars` fetches.
fn private_source() -> (consent_source::Source, u16) {
    let config = format!(
        "[[token]]\nname = \"admin\"\nsha256 = \"{}\"\nroles = [\"writer\", \"reader\"]\n\
         [[token]]\nname = \"sidecars\"\nsha256 = \"{}\"\nroles = [\"fetcher\"]\n",
        consent_source::config::token_sha256_hex(ADMIN_TOKEN),
        consent_source::config::token_sha256_hex(FETCHER_TOKEN)
    );
    start_source_with(consent_source::Options {
        access: consent_source::config::AccessConfig::from_toml(&config).unwrap(),
        ..consent_source::Options::default()
    })
}

/// The demo config with the `consent_source` cluster adding `authorization: Bearer <token>`
/// to every request the fetcher sends (what deploy/envoy/envoy-sidecar.yaml documents).
fn cluster_adds_token(yaml: &str) -> String {
    let cluster = "  - name: consent_source\n";
    let at = yaml.find(cluster).expect("the consent_source cluster");
    let kind = "    type: STATIC\n";
    let insert = at + yaml[at..].find(kind).expect("its type") + kind.len();
    let options = format!(
        r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http_protocol_options: {{}}
        http_filters:
        - name: envoy.filters.http.header_mutation
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
            mutations:
              request_mutations:
              - append:
                  header: {{ key: authorization, value: "Bearer {FETCHER_TOKEN}" }}
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#
    );
    format!("{}{options}{}", &yaml[..insert], &yaml[insert..])
}

fn reason(f: &Fixture, user: &str, purpose: &str) -> (u16, String) {
    let (r, _) = send(f, Req::get("/echo").who(user, purpose));
    let reason = if r.status == 200 {
        r.json()["headers"]["x-consent-decision"][0]
            .as_str()
            .and_then(|d| d.split("; ").find_map(|kv| kv.strip_prefix("reason=")))
            .unwrap_or("")
            .to_string()
    } else {
        r.json()["reason"].as_str().unwrap_or("").to_string()
    };
    (r.status, reason)
}

#[test]
fn the_fetcher_reads_a_private_source_with_the_token_its_cluster_adds() {
    let (source, port) = private_source();
    let f = start_demo_on_source(cluster_adds_token, source, port, true);
    assert_eq!(
        reason(&f, "u-bob", "surveys"),
        (403, "consent_missing".into())
    );

    let url = f.source_url("/users/u-bob/grants/surveys");
    let anonymous = curl(&["-X", "PUT", &url]);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").is_some());
    let fetcher = curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("authorization: Bearer {FETCHER_TOKEN}"),
        &url,
    ]);
    assert_eq!(fetcher.status, 403, "the fetcher's token cannot write");
    let admin = curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("authorization: Bearer {ADMIN_TOKEN}"),
        &url,
    ]);
    assert_eq!(admin.status, 200, "{}", admin.text());

    // The change arrives through a delta the fetcher reads with its token.
    assert!(
        wait_until(Duration::from_secs(5), || reason(&f, "u-bob", "surveys").0
            == 200),
        "the grant did not reach the filter"
    );
    let audit = curl(&[
        "-H",
        &format!("authorization: Bearer {ADMIN_TOKEN}"),
        &f.source_url("/audit?subject=u-bob"),
    ]);
    let last = audit.json()["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["actor"].as_str(), last["action"].as_str()),
        (Some("admin"), Some("grant"))
    );
}

#[test]
fn without_the_token_the_fetcher_loads_nothing() {
    let (source, port) = private_source();
    let f = start_demo_on_source(|y| y.to_string(), source, port, false);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        reason(&f, "u-alice", "marketing.newsletters"),
        (403, "snapshot_unavailable".into())
    );
    let snapshot = curl(&[&f.source_url("/snapshot")]);
    assert_eq!(snapshot.status, 401);
}
