//! End to end: a consent source that wants credentials. The fetcher inside Envoy reads
//! snapshots and deltas with a bearer token its Envoy cluster adds (an upstream
//! `credential_injector` filter on the `consent_source` cluster, the token read from a
//! file: dispatch_http_call goes through the cluster's upstream filters); writes need the
//! writer's token; without the token nothing loads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{
    curl, demo_signing_key, free_port, send, start_demo_on_source, start_source_with, tag,
    wait_until, ClientTls, Envoy, Fixture, Req, TestPki,
};

const ADMIN_TOKEN: &str = "e2e-admin-token-6f1c0a";
const FETCHER_TOKEN: &str = "e2e-fetcher-token-93b2d7";

/// A source that lets nobody in without a token: `admin` writes, `sidecars` fetches. It
/// signs with the demo key, as the shipped configuration requires.
fn private_source() -> (consent_source::Source, u16) {
    let config = format!(
        "[[token]]\nname = \"admin\"\nsha256 = \"{}\"\nroles = [\"writer\", \"reader\"]\n\
         [[token]]\nname = \"sidecars\"\nsha256 = \"{}\"\nroles = [\"fetcher\"]\n",
        consent_source::config::token_sha256_hex(ADMIN_TOKEN),
        consent_source::config::token_sha256_hex(FETCHER_TOKEN)
    );
    start_source_with(consent_source::Options {
        access: consent_source::config::AccessConfig::from_toml(&config).unwrap(),
        // The shipped configs require signed snapshots.
        signer: Some(
            consent_source::sign::Signer::from_file(&demo_signing_key())
                .expect("the demo signing key"),
        ),
        ..consent_source::Options::default()
    })
}

/// The demo config with the `consent_source` cluster adding `authorization: Bearer <token>`
/// to every request the fetcher sends: Envoy's `credential_injector` as an upstream HTTP
/// filter of the cluster, reading the header value from a file (an SDS generic secret, as
/// a mounted Kubernetes Secret would hold it; deploy/envoy/envoy-sidecar.yaml shows it).
fn cluster_adds_token(yaml: &str, secret_file: &Path) -> String {
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
        - name: envoy.filters.http.credential_injector
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector
            overwrite: true
            credential:
              name: envoy.http.injected_credentials.generic
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic
                credential:
                  name: consent-source-token
                  sds_config:
                    path_config_source:
                      path: "{}"
                header: Authorization
        - name: envoy.filters.http.upstream_codec
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#,
        secret_file.display()
    );
    // SDS needs a node name.
    format!(
        "node: {{ id: consent-e2e, cluster: consent-e2e }}\n{}{options}{}",
        &yaml[..insert],
        &yaml[insert..]
    )
}

/// The fetcher's token as an SDS generic secret in a file.
fn token_secret_file() -> PathBuf {
    let dir = std::env::temp_dir().join(tag("consent-source-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token-sds.yaml");
    std::fs::write(
        &path,
        format!(
            "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: consent-source-token\n  generic_secret:\n    secret:\n      inline_string: \"Bearer {FETCHER_TOKEN}\"\n"
        ),
    )
    .unwrap();
    path
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
    let secret = token_secret_file();
    let f = start_demo_on_source(|y| cluster_adds_token(y, &secret), source, port, true);
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

/// An Envoy terminating mTLS in front of the source (as its sidecar would), passing the
/// client certificate's identity on in `x-forwarded-client-cert` (Istio's inbound
/// setting: APPEND_FORWARD, with the URI SAN).
fn mtls_front_proxy(pki: &TestPki, source_port: u16) -> (Envoy, u16) {
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: source_mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - transport_socket: {tls}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: source
          forward_client_cert_details: APPEND_FORWARD
          set_current_client_cert_details: {{ uri: true, subject: true, dns: true }}
          route_config:
            virtual_hosts:
            - name: source
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: source }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: source
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: source
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {source_port} }} }}
"#,
        tls = pki.server_transport_socket()
    );
    let envoy = Envoy::start(&yaml, port, admin).unwrap_or_else(|e| panic!("{e}"));
    (envoy, port)
}

fn mtls_call(client: &ClientTls, method: &str, url: &str, extra: &[&str]) -> support::Response {
    let mut args = vec![
        "-X",
        method,
        "--cacert",
        client.ca.to_str().unwrap(),
        "--cert",
        client.cert.to_str().unwrap(),
        "--key",
        client.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

#[test]
fn client_identities_arrive_from_an_mtls_proxy_in_front_of_the_source() {
    let config = "trust_forwarded_client_cert = true\n\
        [[client]]\nidentity = \"spiffe://e2e.test/ns/app/sa/api\"\nroles = [\"fetcher\"]\n\
        [[client]]\nidentity = \"spiffe://e2e.test/ns/cs/sa/consent-admin\"\nroles = [\"writer\", \"reader\"]\n";
    let (_source, source_port) = start_source_with(consent_source::Options {
        access: consent_source::config::AccessConfig::from_toml(config).unwrap(),
        ..consent_source::Options::default()
    });
    let pki = TestPki::new();
    let (_proxy, port) = mtls_front_proxy(&pki, source_port);
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");
    let app = pki.client("app", "spiffe://e2e.test/ns/app/sa/api");
    let admin = pki.client("admin", "spiffe://e2e.test/ns/cs/sa/consent-admin");
    let stranger = pki.client("stranger", "spiffe://e2e.test/ns/other/sa/x");

    assert_eq!(mtls_call(&app, "GET", &url("/snapshot"), &[]).status, 200);
    assert_eq!(
        mtls_call(&app, "PUT", &url("/users/u-bob/stop-use"), &[]).status,
        403
    );
    let put = mtls_call(&admin, "PUT", &url("/users/u-bob/stop-use"), &[]);
    assert_eq!(put.status, 200, "{}", put.text());
    let audit = mtls_call(&admin, "GET", &url("/audit?subject=u-bob"), &[]).json();
    let last = audit["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "spiffe://e2e.test/ns/cs/sa/consent-admin");
    assert_eq!(last["action"], "stop_use");

    let refused = mtls_call(&stranger, "GET", &url("/snapshot"), &[]);
    assert_eq!(refused.status, 403);
    // A client's own x-forwarded-client-cert stays in front of the proxy's element: the
    // source reads the last one, the stranger's real identity.
    let spoof = "x-forwarded-client-cert: URI=spiffe://e2e.test/ns/cs/sa/consent-admin";
    let spoofed = mtls_call(
        &stranger,
        "PUT",
        &url("/users/u-bob/stop-use"),
        &["-H", spoof],
    );
    assert_eq!(spoofed.status, 403, "{}", spoofed.text());
}
