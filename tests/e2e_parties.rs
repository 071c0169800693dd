//! Who receives the data, through real Envoy: callers named by their mTLS certificate
//! (certificates made here with openssl), recipients named by the destination cluster on
//! an egress listener, Global Privacy Control, re-consent after a policy change, and
//! per-route rules.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use support::{send, start_demo, start_demo_mtls, wait_until, ClientTls, Fixture, Req, TestPki};

const OPERATOR_ID: &str = "spiffe://minna-app.example/ns/tsunagu/sa/app-api";
const CITY_ID: &str = "spiffe://minna-app.example/ns/saitama-city/sa/portal";
const STRANGER_ID: &str = "spiffe://ads.example/ns/default/sa/offers";
/// The shipped demo's `caller` block (its demo caller header `x-demo-caller` included).
const SHIPPED_CALLER: &str = r#""caller": { "from": "peer_certificate", "unidentified_party": "tsunagu", "dev_header": "x-demo-caller", "identities": { "saitama-city": ["spiffe://minna-app.example/ns/saitama-city/*", "cluster:saitama-city", "header:saitama-city"] } }"#;

fn reason(resp: &support::Response) -> String {
    resp.json()["reason"].as_str().unwrap_or("").to_string()
}

fn decision_of(seen: &Option<consent_tools::demo_backend::SeenRequest>) -> String {
    seen.as_ref()
        .and_then(|s| s.header("x-consent-decision"))
        .unwrap_or_default()
        .to_string()
}

struct Mtls {
    f: Fixture,
    city: ClientTls,
    stranger: ClientTls,
    _pki: TestPki,
}

fn mtls() -> &'static Mtls {
    static FIXTURE: std::sync::OnceLock<Mtls> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let pki = TestPki::new();
        let operator = pki.client("operator", OPERATOR_ID);
        let city = pki.client("city", CITY_ID);
        let stranger = pki.client("stranger", STRANGER_ID);
        let f = start_demo_mtls(|y| y.to_string(), &pki, operator);
        Mtls {
            f,
            city,
            stranger,
            _pki: pki,
        }
    })
}

#[test]
fn an_mtls_peer_is_named_by_its_certificate_and_joint_users_get_joint_use_only() {
    let m = mtls();
    // The operator's own service: everything its purposes allow.
    let (resp, seen) = send(&m.f, Req::get("/echo").who("u-alice", "support.inquiries"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let d = decision_of(&seen);
    assert!(d.contains("party=tsunagu; party_kind=operator"), "{d}");
    // The city (a joint user, §8): joint-use purposes pass, others are refused.
    let (resp, seen) = send(
        &m.f,
        Req::get("/echo")
            .who("u-bob", "joint.ebpm")
            .with_client(&m.city),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(decision_of(&seen).contains("party=saitama-city; party_kind=joint_user"));
    let (resp, seen) = send(
        &m.f,
        Req::get("/echo")
            .who("u-alice", "marketing.newsletters")
            .with_client(&m.city),
    );
    assert_eq!((resp.status, reason(&resp)), (403, "joint_use_only".into()));
    assert!(seen.is_none(), "nothing reached the backend");
}

#[test]
fn a_certificate_no_party_claims_is_a_third_party_even_where_plain_clients_are_the_operator() {
    let m = mtls();
    // The demo config names identity-less clients the operator; a client *with* an
    // identity nobody claims is still a third party.
    let (resp, seen) = send(
        &m.f,
        Req::get("/echo")
            .who("u-alice", "support.inquiries")
            .with_client(&m.stranger),
    );
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "third_party_consent_missing".into())
    );
    assert!(seen.is_none());
    let (resp, _) = send(
        &m.f,
        Req::get("/echo")
            .who("u-alice", "joint.ebpm")
            .with_client(&m.stranger),
    );
    assert_eq!(reason(&resp), "party_not_joint_user");
    // Provision allowed by law needs no consent (§7).
    let (resp, seen) = send(
        &m.f,
        Req::get("/users/u-bob/profile")
            .who("u-bob", "government.benefits")
            .with_client(&m.stranger),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(decision_of(&seen).contains("party=-; party_kind=third_party"));
}

#[test]
fn consent_to_provision_lets_a_third_party_have_what_it_covers_until_the_person_stops_it() {
    let m = mtls();
    let source =
        |method: &str, path: &str| support::curl(&["-X", method, &m.f.source_url(path)]).status;
    assert_eq!(
        source("PUT", "/users/u-tp/grants/third_party.provision"),
        200
    );
    assert_eq!(source("PUT", "/users/u-tp/grants/marketing.campaigns"), 200);
    let ask = || {
        send(
            &m.f,
            Req::get("/echo?email=a@example.jp&lat=35.9")
                .who("u-tp", "marketing.campaigns")
                .header("x-device-id", "dev-1")
                .with_client(&m.stranger),
        )
    };
    assert!(wait_until(Duration::from_secs(5), || ask().0.status == 200));
    let (_, seen) = ask();
    let seen = seen.expect("reached the backend");
    assert!(
        seen.path.contains("email="),
        "provision covers contact details"
    );
    assert!(!seen.path.contains("lat="), "location is not provided");
    assert_eq!(seen.header("x-device-id"), None);
    // 第三者提供の停止 (§10) overrides the consent.
    assert_eq!(source("PUT", "/users/u-tp/stop-third-party"), 200);
    assert!(wait_until(Duration::from_secs(5), || {
        reason(&ask().0) == "third_party_stopped"
    }));
    // The operator itself is not a third party: still served.
    let (resp, _) = send(&m.f, Req::get("/echo").who("u-tp", "marketing.campaigns"));
    assert_eq!(resp.status, 200);
}

#[test]
fn gpc_objects_to_third_party_provision_and_third_party_marketing() {
    let m = mtls();
    let source =
        |method: &str, path: &str| support::curl(&["-X", method, &m.f.source_url(path)]).status;
    assert_eq!(
        source("PUT", "/users/u-gpc/grants/third_party.provision"),
        200
    );
    assert_eq!(
        source("PUT", "/users/u-gpc/grants/marketing.third_party_offers"),
        200
    );
    assert_eq!(
        source("PUT", "/users/u-gpc/grants/marketing.newsletters"),
        200
    );
    let ask = |purpose: &str, client: Option<&ClientTls>, gpc: bool| {
        let mut req = Req::get("/echo").who("u-gpc", purpose);
        if let Some(c) = client {
            req = req.with_client(c);
        }
        if gpc {
            req = req.header("sec-gpc", "1");
        }
        send(&m.f, req)
    };
    assert!(wait_until(Duration::from_secs(5), || {
        ask("marketing.newsletters", Some(&m.stranger), false)
            .0
            .status
            == 200
    }));
    let (resp, seen) = ask("marketing.newsletters", Some(&m.stranger), true);
    assert_eq!((resp.status, reason(&resp)), (403, "gpc_objection".into()));
    assert!(seen.is_none());
    // Third-party marketing is objected to whoever asks (shipped `gpc.purposes`).
    assert_eq!(
        ask("marketing.third_party_offers", None, false).0.status,
        200
    );
    let (resp, _) = ask("marketing.third_party_offers", None, true);
    assert_eq!(reason(&resp), "gpc_objection");
    // First-party use is untouched; the decision records the signal.
    let (resp, seen) = ask("marketing.newsletters", None, true);
    assert_eq!(resp.status, 200);
    assert!(decision_of(&seen).contains("gpc=1"));
    // `Sec-GPC: 0` is no signal.
    let (resp, _) = send(
        &m.f,
        Req::get("/echo")
            .who("u-gpc", "marketing.newsletters")
            .header("sec-gpc", "0")
            .with_client(&m.stranger),
    );
    assert_eq!(resp.status, 200);
}

#[test]
fn a_client_without_a_certificate_never_reaches_the_filter() {
    let m = mtls();
    let url = m.f.envoy.url("/echo").replacen("http://", "https://", 1);
    let ca = m.city.ca.display().to_string();
    let resp = support::curl(&["--cacert", &ca, "-H", "x-user-id: u-alice", &url]);
    assert_eq!(
        resp.status, 0,
        "the TLS handshake fails without a client certificate"
    );
}

/// Adds clusters named after parties (all pointing at the demo backend) and routes to
/// them, and makes the filter name the recipient by destination cluster (egress).
fn egress(yaml: &str) -> String {
    let cluster = |name: &str| {
        format!(
            "  - name: {name}\n    connect_timeout: 1s\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: 8081 }}\n"
        )
    };
    let with_clusters = yaml.replacen(
        "  clusters:\n",
        &format!(
            "  clusters:\n{}{}",
            cluster("saitama-city"),
            cluster("ad-network")
        ),
        1,
    );
    with_clusters
        .replacen(
            "              - name: stats\n",
            "              - name: to-city\n                match: { prefix: \"/city/\" }\n                route: { cluster: saitama-city }\n              - name: to-ads\n                match: { prefix: \"/ads/\" }\n                route: { cluster: ad-network }\n              - name: stats\n",
            1,
        )
        .replace(
            SHIPPED_CALLER,
            "\"caller\": { \"from\": \"upstream_cluster\" }",
        )
}

#[test]
fn on_egress_the_destination_cluster_names_the_recipient() {
    let f = start_demo(egress);
    let (resp, seen) = send(&f, Req::get("/city/echo").who("u-bob", "joint.ebpm"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(decision_of(&seen).contains("party=saitama-city"));
    let (resp, seen) = send(&f, Req::get("/ads/echo").who("u-bob", "joint.ebpm"));
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "party_not_joint_user".into())
    );
    assert!(seen.is_none());
    let (resp, _) = send(
        &f,
        Req::get("/ads/echo").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(reason(&resp), "third_party_consent_missing");
    // A cluster no party claims, without an `unidentified_party`, is a third party too.
    let (resp, _) = send(&f, Req::get("/echo").who("u-alice", "support.inquiries"));
    assert_eq!(reason(&resp), "third_party_consent_missing");
}

#[test]
fn the_development_caller_header_is_honoured_only_when_enabled() {
    let header = "x-dev-caller";
    let shipped = support::shipped_demo();
    let (resp, seen) = send(
        shipped,
        Req::get("/echo")
            .who("u-alice", "marketing.newsletters")
            .header(header, "saitama-city"),
    );
    assert_eq!(resp.status, 200, "ignored in the shipped config");
    assert!(decision_of(&seen).contains("party=tsunagu"));
    let f = start_demo(|y| {
        y.replace(
            SHIPPED_CALLER,
            "\"caller\": { \"from\": \"peer_certificate\", \"unidentified_party\": \"tsunagu\", \"dev_header\": \"x-dev-caller\", \"identities\": { \"saitama-city\": [\"header:city-dev\"] } }",
        )
    });
    let (resp, _) = send(
        &f,
        Req::get("/echo")
            .who("u-alice", "marketing.newsletters")
            .header(header, "city-dev"),
    );
    assert_eq!(reason(&resp), "joint_use_only");
}

#[test]
fn after_a_material_change_only_that_purpose_needs_fresh_consent() {
    let policy = support::policy_v2_changing("marketing.newsletters");
    let f = start_demo(|y| {
        y.replacen(
            "\"user_header\": \"x-user-id\",",
            &format!("\"policy\": {policy},\n            \"user_header\": \"x-user-id\","),
            1,
        )
    });
    let (resp, seen) = send(
        &f,
        Req::get("/echo").who("u-alice", "marketing.newsletters"),
    );
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "reconsent_required".into())
    );
    assert!(seen.is_none());
    assert_eq!(resp.json()["policy_version"], 2);
    // Consents to unchanged purposes keep working, location grants included.
    let (resp, seen) = send(
        &f,
        Req::get("/echo?lat=35.86").who("u-alice", "security.crime_prevention"),
    );
    assert_eq!(resp.status, 200);
    assert!(seen.unwrap().path.contains("lat="));
    // Consent under version 2 counts.
    let status = support::curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "{\"policy_version\": 2}",
        &f.source_url("/users/u-alice/grants/marketing.newsletters"),
    ])
    .status;
    assert_eq!(status, 200);
    assert!(wait_until(Duration::from_secs(5), || {
        send(
            &f,
            Req::get("/echo").who("u-alice", "marketing.newsletters"),
        )
        .0
        .status
            == 200
    }));
}

#[test]
fn route_rules_pick_purposes_and_user_requirements_by_route_name() {
    let f = support::shipped_demo();
    // `stats` route -> rule `ward-statistics`: joint.ebpm and marketing.analysis, no user needed.
    let (resp, seen) = send(
        f,
        Req::get("/stats/wards").header("x-data-purpose", "marketing.analysis"),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(decision_of(&seen).contains("rule=ward-statistics"));
    let (resp, _) = send(
        f,
        Req::get("/stats/wards").who("u-alice", "support.inquiries"),
    );
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "purpose_not_on_route".into())
    );
    // Elsewhere the default rule applies: a user ID is required.
    let (resp, _) = send(
        f,
        Req::get("/echo").header("x-data-purpose", "marketing.analysis"),
    );
    assert_eq!(reason(&resp), "user_missing");
}

#[test]
fn route_rules_match_host_and_path_and_add_selectors() {
    let f = start_demo(|y| {
        y.replacen(
            "\"routes\": [",
            "\"routes\": [\n              { \"name\": \"legacy\", \"match\": { \"host\": \"legacy.example\", \"path_prefix\": \"/echo\" }, \"json\": { \"location.gps\": [\"$.pos\"] } },",
            1,
        )
    });
    // support.inquiries removes location without an explicit grant (no coarsening).
    let body = r#"{"pos": "35.861234,139.645678", "note": "hi"}"#;
    let (resp, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "support.inquiries")
            .header("host", "legacy.example")
            .json(body),
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = seen.unwrap();
    let got: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        got,
        serde_json::json!({"note": "hi"}),
        "the rule's selector removed pos"
    );
    assert!(decision_of(&Some(seen)).contains("rule=legacy"));
    // Another host: the policy's selectors only, `pos` is not a location field there.
    let (_, seen) = send(
        &f,
        Req::get("/echo")
            .who("u-bob", "support.inquiries")
            .json(body),
    );
    let got: serde_json::Value = serde_json::from_slice(&seen.unwrap().body).unwrap();
    assert_eq!(got["pos"], "35.861234,139.645678");
}

#[test]
fn a_processor_abroad_gets_personal_data_only_with_consent_to_outsourcing_abroad() {
    // The shipped policy with one processor outside Japan (§6).
    let mut policy: serde_json::Value =
        serde_json::from_str(consent_core::DEFAULT_POLICY_JSON).unwrap();
    policy["parties"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "overseas-support", "kind": "processor", "country": "SG",
            "label": {"ja": "海外サポート", "en": "Overseas support (processor abroad)"},
            "identities": ["spiffe://minna-app.example/ns/overseas-support/*"]
        }));
    let pki = TestPki::new();
    let operator = pki.client("operator", OPERATOR_ID);
    let abroad = pki.client(
        "abroad",
        "spiffe://minna-app.example/ns/overseas-support/sa/helpdesk",
    );
    let f = start_demo_mtls(
        |y| {
            y.replacen(
                "\"user_header\": \"x-user-id\",",
                &format!("\"policy\": {policy},\n            \"user_header\": \"x-user-id\","),
                1,
            )
        },
        &pki,
        operator,
    );
    let ask = || {
        send(
            &f,
            Req::get("/echo")
                .who("u-abroad", "support.inquiries")
                .with_client(&abroad),
        )
    };
    let (resp, seen) = ask();
    assert!(seen.is_none(), "the processor abroad got the request");
    assert_eq!(
        (resp.status, reason(&resp)),
        (403, "foreign_outsourcing_consent_missing".into())
    );
    // The operator's own services are not concerned.
    let (resp, _) = send(&f, Req::get("/echo").who("u-abroad", "support.inquiries"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    // With consent to outsourcing abroad, the purpose decides as for any processor.
    let status = support::curl(&[
        "-X",
        "PUT",
        &f.source_url("/users/u-abroad/grants/outsourcing.abroad"),
    ])
    .status;
    assert_eq!(status, 200);
    assert!(wait_until(Duration::from_secs(5), || ask().0.status == 200));
    let d = decision_of(&ask().1);
    assert!(
        d.contains("party=overseas-support; party_kind=processor"),
        "{d}"
    );
}
