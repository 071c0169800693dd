use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn minimal() -> serde_json::Value {
    serde_json::json!({
        "id": "p", "version": 2,
        "categories": [
            {"id": "email", "label": {"ja": "メール", "en": "Email"}, "headers": ["X-Email"]},
            {"id": "location.gps", "label": {"ja": "GPS", "en": "GPS"}, "explicit_grant": true, "query": ["LAT"]}
        ],
        "purposes": [
            {"id": "newsletters", "label": {"ja": "a", "en": "b"}, "basis": "consent", "categories": ["email"]}
        ]
    })
}

fn compile(v: serde_json::Value) -> Result<CompiledPolicy, ConfigError> {
    CompiledPolicy::from_json(&v.to_string())
}

#[test]
fn shipped_policy_compiles_with_every_purpose_of_sections_3_and_8() {
    let p = CompiledPolicy::default_policy().unwrap();
    for id in [
        "marketing.campaigns",
        "marketing.newsletters",
        "marketing.third_party_offers",
        "surveys",
        "business.partner_operations",
        "support.inquiries",
        "security.crime_prevention",
        "marketing.analysis",
        "partner.referrals",
        "outsourced.operations",
        "service.improvement",
        "government.benefits",
        "joint.administrative_services",
        "joint.administrative_information",
        "joint.ebpm",
        "joint.troubleshooting",
        "third_party.provision",
        "outsourcing.abroad",
    ] {
        assert!(p.purpose_idx(id).is_some(), "missing purpose {id}");
    }
    assert_eq!(p.purposes.len(), 18);
    let (_, provision) = p.third_party_provision().unwrap();
    assert_eq!(provision.id, "third_party.provision");
    let (_, abroad) = p.foreign_outsourcing().unwrap();
    assert_eq!(abroad.id, "outsourcing.abroad");
    assert!(p
        .parties
        .iter()
        .all(|party| party.country.as_deref() == Some("JP")));
    assert!(
        p.parties.iter().all(|party| !party.abroad),
        "every shipped party is in Japan"
    );
}

#[test]
fn a_processor_in_another_country_is_abroad_and_countries_are_checked() {
    let mut doc = minimal();
    doc["parties"] = serde_json::json!([
        {"id": "op", "label": {"ja": "a", "en": "a"}, "kind": "operator", "country": "JP"},
        {"id": "near", "label": {"ja": "b", "en": "b"}, "kind": "processor", "country": "JP"},
        {"id": "far", "label": {"ja": "c", "en": "c"}, "kind": "processor", "country": "SG"},
        {"id": "city", "label": {"ja": "d", "en": "d"}, "kind": "joint_user", "country": "US"}
    ]);
    let p = compile(doc.clone()).unwrap();
    let abroad: Vec<bool> = p.parties.iter().map(|party| party.abroad).collect();
    assert_eq!(
        abroad,
        [false, false, true, false],
        "only processors count (§6)"
    );
    doc["parties"][2]["country"] = serde_json::json!("sg");
    assert_eq!(
        compile(doc.clone()).unwrap_err().path(),
        "policy.parties[2].country"
    );
    doc["parties"][2]["country"] = serde_json::json!("SG");
    doc["parties"][0].as_object_mut().unwrap().remove("country");
    assert_eq!(
        compile(doc.clone()).unwrap_err().path(),
        "policy.parties[1].country"
    );
    doc["parties"][0]["country"] = serde_json::json!("JP");
    doc["foreign_outsourcing"] = serde_json::json!("nope");
    assert_eq!(
        compile(doc).unwrap_err().path(),
        "policy.foreign_outsourcing"
    );
}

#[test]
fn party_and_provision_mistakes_name_the_field() {
    let mut doc = minimal();
    doc["parties"] = serde_json::json!([
        {"id": "a", "label": {"ja": "a", "en": "a"}, "kind": "operator", "identities": ["spiffe://x/a"]},
        {"id": "b", "label": {"ja": "b", "en": "b"}, "kind": "third_party", "identities": ["spiffe://x/a"]}
    ]);
    assert_eq!(
        compile(doc.clone()).unwrap_err().path(),
        "policy.parties[1].identities[0]"
    );
    doc["parties"][1]["identities"] = serde_json::json!(["nope"]);
    assert_eq!(
        compile(doc.clone()).unwrap_err().path(),
        "policy.parties[1].identities[0]"
    );
    doc["parties"][1]["identities"] = serde_json::json!([]);
    doc["third_party_provision"] = serde_json::json!("missing");
    assert_eq!(
        compile(doc.clone()).unwrap_err().path(),
        "policy.third_party_provision"
    );
}

#[test]
fn shipped_policy_requires_explicit_grants_for_every_location_category() {
    let p = CompiledPolicy::default_policy().unwrap();
    for id in ["location.gps", "location.wifi", "location.bluetooth"] {
        let idx = p.category_idx(id).unwrap();
        assert!(p.explicit_grant.contains(idx), "{id}");
    }
    assert!(!p.explicit_grant.contains(p.category_idx("email").unwrap()));
}

#[test]
fn header_and_query_names_are_matched_in_lowercase() {
    let p = compile(minimal()).unwrap();
    let email = p.category_idx("email").unwrap();
    assert!(p.header_categories("x-email").contains(email));
    let gps = p.category_idx("location.gps").unwrap();
    assert!(p.query_categories("lat").contains(gps));
}

#[test]
fn unknown_category_in_a_purpose_is_rejected_with_its_path() {
    let mut v = minimal();
    v["purposes"][0]["categories"] = serde_json::json!(["email", "emial"]);
    let err = compile(v).unwrap_err();
    assert_eq!(err.path(), "policy.purposes[0].categories[1]");
    assert!(err.to_string().contains("unknown category `emial`"));
}

#[test]
fn unknown_field_is_rejected_with_its_path() {
    let mut v = minimal();
    v["purposes"][0]["basiss"] = serde_json::json!("consent");
    let err = compile(v).unwrap_err();
    assert!(err.path().starts_with("policy.purposes[0]"), "{err}");
    assert!(err.to_string().contains("unknown field `basiss`"), "{err}");
}

#[test]
fn unknown_basis_is_rejected() {
    let mut v = minimal();
    v["purposes"][0]["basis"] = serde_json::json!("vibes");
    let err = compile(v).unwrap_err();
    assert_eq!(err.path(), "policy.purposes[0].basis");
}

#[test]
fn duplicate_purpose_ids_are_rejected() {
    let mut v = minimal();
    let first = v["purposes"][0].clone();
    v["purposes"].as_array_mut().unwrap().push(first);
    assert_eq!(compile(v).unwrap_err().path(), "policy.purposes[1].id");
}

#[test]
fn material_change_after_the_policy_version_is_rejected() {
    let mut v = minimal();
    v["purposes"][0]["changed_in"] = serde_json::json!(3);
    assert_eq!(
        compile(v).unwrap_err().path(),
        "policy.purposes[0].changed_in"
    );
}

#[test]
fn without_consent_on_a_notice_purpose_is_rejected() {
    let mut v = minimal();
    v["purposes"][0]["basis"] = serde_json::json!("notice");
    v["purposes"][0]["without_consent"] = serde_json::json!("strip");
    assert_eq!(
        compile(v).unwrap_err().path(),
        "policy.purposes[0].without_consent"
    );
}

#[test]
fn pseudo_headers_cannot_be_mapped() {
    let mut v = minimal();
    v["categories"][0]["headers"] = serde_json::json!([":path"]);
    assert_eq!(
        compile(v).unwrap_err().path(),
        "policy.categories[0].headers[0]"
    );
}

#[test]
fn a_malformed_selector_is_a_config_error_naming_it() {
    let mut v = minimal();
    v["categories"][0]["json"] = serde_json::json!(["$..email", "user.email"]);
    assert_eq!(
        compile(v).unwrap_err().path(),
        "policy.categories[0].json[1]"
    );
}

#[test]
fn a_coarsen_transform_needs_a_coarsen_rule() {
    let mut v = minimal();
    v["purposes"][0]["transforms"] = serde_json::json!({"email": "coarsen"});
    assert_eq!(
        compile(v.clone()).unwrap_err().path(),
        "policy.purposes[0].transforms.email"
    );
    v["categories"][0]["coarsen"] = serde_json::json!({"truncate_after": ["@"]});
    assert!(compile(v).is_ok());
}

#[test]
fn a_transform_of_an_unknown_category_is_rejected() {
    let mut v = minimal();
    v["purposes"][0]["transforms"] = serde_json::json!({"emial": "remove"});
    assert_eq!(
        compile(v).unwrap_err().path(),
        "policy.purposes[0].transforms.emial"
    );
}

#[test]
fn malformed_json_is_a_parse_error() {
    assert!(matches!(
        CompiledPolicy::from_json("{\"id\": "),
        Err(ConfigError::Parse { .. })
    ));
}
