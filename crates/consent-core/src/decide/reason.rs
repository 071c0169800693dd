//! Reason codes: the stable, machine-readable why of every decision and redaction.

use serde::Serialize;

/// Why a request was allowed, blocked, or had a category removed.
///
/// The string form ([`Reason::as_str`]) is part of the filter's interface: it appears
/// in block replies, the decision header, logs and metrics. Never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Allowed: the person consented to this opt-in purpose under current terms.
    ConsentGranted,
    /// Allowed: a notice-based purpose the person has not stopped.
    NoticeBasis,
    /// Allowed: a purpose needed to perform a contract.
    ContractBasis,
    /// Allowed: a purpose required by law or a public task.
    LegalBasis,
    /// Blocked: no purpose header (use beyond purpose, §4).
    PurposeMissing,
    /// Blocked: the purpose is not in the policy's catalogue (use beyond purpose, §4).
    PurposeUnknown,
    /// Blocked: several purpose headers, or several values in one.
    PurposeAmbiguous,
    /// Blocked: the purpose header is not valid text or is too long.
    PurposeInvalid,
    /// Blocked: no user-ID header where one is required.
    UserMissing,
    /// Blocked: several user-ID headers, or several values in one.
    UserAmbiguous,
    /// Blocked: the user-ID header is not valid text or is too long.
    UserInvalid,
    /// Blocked or stripped: no consent to this opt-in purpose.
    ConsentMissing,
    /// Blocked or stripped: consent was given under terms that changed materially since (§11).
    ReconsentRequired,
    /// Blocked: the person asked to stop use (利用停止, §10).
    UseStopped,
    /// Removed: the purpose may not touch this category.
    CategoryNotInPurpose,
    /// Removed: the category needs an explicit grant for this purpose, and there is none.
    ExplicitGrantMissing,
    /// Blocked: the body holds a category whose action for this purpose is `block`.
    ForbiddenDataPresent,
    /// Blocked: the body was declared JSON but is not valid JSON.
    BodyInvalidJson,
    /// Blocked: the body is larger than the configured limit.
    BodyTooLarge,
    /// Blocked: the body has a content encoding the filter cannot read.
    BodyEncodingUnsupported,
    /// Blocked: the body is not JSON and the configuration refuses unparsed bodies. No
    /// longer given since bodies of every format are read: `body.unparsed: block` refuses
    /// with [`Reason::BodyUnreadable`]. Kept so that the code keeps its meaning in stored
    /// logs and dashboards.
    BodyNotJson,
    /// Blocked: the filter cannot read the body (or a part of it) and the configuration
    /// refuses such bodies (`body.unparsed: block`).
    BodyUnreadable,
    /// Blocked: the body is declared as multipart form data but is not valid multipart.
    BodyInvalidMultipart,
    /// Blocked: the body declares two different formats (e.g. JSON and a form).
    BodyTypeAmbiguous,
    /// Blocked or stripped: no consent snapshot has arrived yet.
    SnapshotUnavailable,
    /// Blocked or stripped: the consent snapshot is older than the staleness bound.
    SnapshotStale,
    /// Blocked: the person withdrew consent to this purpose (§10).
    ConsentWithdrawn,
    /// Blocked: the person objected to this notice-based purpose (§10).
    Objected,
    /// Blocked or stripped: the consent names a policy version newer than the one loaded.
    ConsentVersionUnknown,
    /// Blocked: the caller is a third party and the person has not consented to provision (§7).
    ThirdPartyConsentMissing,
    /// Blocked: the caller is a third party and the person asked to stop provision (§10).
    ThirdPartyStopped,
    /// Blocked or stripped: the caller is a processor abroad and the person has not
    /// consented to entrusting their data to one (§6).
    ForeignOutsourcingConsentMissing,
    /// Blocked: the request carries Global Privacy Control, which objects to this use.
    GpcObjection,
    /// Blocked: a joint user asked for a purpose outside joint use (§8).
    JointUseOnly,
    /// Blocked: a caller outside the joint users asked for a joint-use purpose (§8).
    PartyNotJointUser,
    /// Blocked: the route does not accept this purpose.
    PurposeNotOnRoute,
    /// Removed: the person's consent to provision does not cover this category (§7).
    NotForThirdParties,
    /// Blocked: a gRPC body is not valid protobuf, or its framing is broken or truncated.
    BodyInvalidProtobuf,
    /// Blocked: a gRPC call of a method the configured descriptors do not describe.
    GrpcMethodUnknown,
    /// Blocked: the filter could not evaluate the request (fail closed).
    InternalError,
    /// Blocked: a provision to a third party or joint user the provision ledger cannot
    /// record now (its buffer is full, or the consent source has not taken records for
    /// longer than the bound), with `ledger.on_unavailable: block`.
    LedgerUnavailable,
}

impl Reason {
    /// The stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConsentGranted => "consent_granted",
            Reason::NoticeBasis => "notice_basis",
            Reason::ContractBasis => "contract_basis",
            Reason::LegalBasis => "legal_basis",
            Reason::PurposeMissing => "purpose_missing",
            Reason::PurposeUnknown => "purpose_unknown",
            Reason::PurposeAmbiguous => "purpose_ambiguous",
            Reason::PurposeInvalid => "purpose_invalid",
            Reason::UserMissing => "user_missing",
            Reason::UserAmbiguous => "user_ambiguous",
            Reason::UserInvalid => "user_invalid",
            Reason::ConsentMissing => "consent_missing",
            Reason::ReconsentRequired => "reconsent_required",
            Reason::UseStopped => "use_stopped",
            Reason::CategoryNotInPurpose => "category_not_in_purpose",
            Reason::ExplicitGrantMissing => "explicit_grant_missing",
            Reason::ForbiddenDataPresent => "forbidden_data_present",
            Reason::BodyInvalidJson => "body_invalid_json",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyEncodingUnsupported => "body_encoding_unsupported",
            Reason::BodyNotJson => "body_not_json",
            Reason::BodyUnreadable => "body_unreadable",
            Reason::BodyInvalidMultipart => "body_invalid_multipart",
            Reason::BodyTypeAmbiguous => "body_type_ambiguous",
            Reason::SnapshotUnavailable => "snapshot_unavailable",
            Reason::SnapshotStale => "snapshot_stale",
            Reason::ConsentWithdrawn => "consent_withdrawn",
            Reason::Objected => "objected",
            Reason::ConsentVersionUnknown => "consent_version_unknown",
            Reason::ThirdPartyConsentMissing => "third_party_consent_missing",
            Reason::ThirdPartyStopped => "third_party_stopped",
            Reason::ForeignOutsourcingConsentMissing => "foreign_outsourcing_consent_missing",
            Reason::GpcObjection => "gpc_objection",
            Reason::JointUseOnly => "joint_use_only",
            Reason::PartyNotJointUser => "party_not_joint_user",
            Reason::PurposeNotOnRoute => "purpose_not_on_route",
            Reason::NotForThirdParties => "not_for_third_parties",
            Reason::BodyInvalidProtobuf => "body_invalid_protobuf",
            Reason::GrpcMethodUnknown => "grpc_method_unknown",
            Reason::InternalError => "internal_error",
            Reason::LedgerUnavailable => "ledger_unavailable",
        }
    }

    /// A short human sentence for block replies; never holds request data.
    pub fn message(self) -> &'static str {
        match self {
            Reason::ConsentGranted => "the person consented to this purpose",
            Reason::NoticeBasis => "the purpose is notified and the person has not stopped it",
            Reason::ContractBasis => "the purpose is needed to perform a contract",
            Reason::LegalBasis => "the purpose is required by law",
            Reason::PurposeMissing => "the request does not state a data purpose",
            Reason::PurposeUnknown => "the data purpose is not one the privacy policy allows",
            Reason::PurposeAmbiguous => "the request states more than one data purpose",
            Reason::PurposeInvalid => "the data purpose header is malformed",
            Reason::UserMissing => "the request does not identify the person the data is about",
            Reason::UserAmbiguous => "the request identifies more than one person",
            Reason::UserInvalid => "the user id header is malformed",
            Reason::ConsentMissing => "the person has not consented to this purpose",
            Reason::ReconsentRequired => {
                "the person's consent predates a material change of the policy"
            }
            Reason::UseStopped => "the person asked to stop the use of their data",
            Reason::CategoryNotInPurpose => "the purpose may not use this data category",
            Reason::ExplicitGrantMissing => {
                "the person has not explicitly granted this category for this purpose"
            }
            Reason::ForbiddenDataPresent => "the body holds data this purpose may not receive",
            Reason::BodyInvalidJson => "the body is declared as JSON but is not valid JSON",
            Reason::BodyTooLarge => "the body is larger than the consent filter accepts",
            Reason::BodyEncodingUnsupported => {
                "the body is compressed in a way the consent filter cannot inspect"
            }
            Reason::BodyNotJson => "the body is not JSON and cannot be inspected",
            Reason::BodyUnreadable => "the body is in a format the consent filter cannot inspect",
            Reason::BodyInvalidMultipart => {
                "the body is declared as multipart form data but is not valid multipart"
            }
            Reason::BodyTypeAmbiguous => "the body declares more than one content type",
            Reason::SnapshotUnavailable => "the consent filter has no consent snapshot yet",
            Reason::SnapshotStale => "the consent filter's consent snapshot is out of date",
            Reason::ConsentWithdrawn => "the person withdrew consent to this purpose",
            Reason::Objected => "the person objected to this use of their data",
            Reason::ConsentVersionUnknown => {
                "the person's consent refers to a policy version this filter does not know"
            }
            Reason::ThirdPartyConsentMissing => {
                "the person has not consented to provision of their data to third parties"
            }
            Reason::ThirdPartyStopped => {
                "the person asked to stop provision of their data to third parties"
            }
            Reason::ForeignOutsourcingConsentMissing => {
                "the person has not consented to the handling of their data by a processor abroad"
            }
            Reason::GpcObjection => {
                "the request carries a Global Privacy Control objection to this use"
            }
            Reason::JointUseOnly => "joint users may use the data only for the joint-use purposes",
            Reason::PartyNotJointUser => "only the joint users may use the data for this purpose",
            Reason::PurposeNotOnRoute => "this route does not accept the data purpose",
            Reason::NotForThirdParties => {
                "the person's consent to provision does not cover this data category"
            }
            Reason::BodyInvalidProtobuf => "the grpc body is not valid protobuf",
            Reason::GrpcMethodUnknown => {
                "the consent filter has no schema for this grpc method and cannot inspect it"
            }
            Reason::InternalError => "the consent filter could not evaluate the request",
            Reason::LedgerUnavailable => {
                "the provision cannot be recorded in the provision ledger now"
            }
        }
    }

    /// The gRPC status code (`grpc-status`) a gRPC client should get for a block or
    /// refusal with this reason: 8 `RESOURCE_EXHAUSTED` for size, 3 `INVALID_ARGUMENT` for
    /// an unreadable request body, 13 `INTERNAL` for an unreadable response body and for
    /// internal errors, 7 `PERMISSION_DENIED` for everything the policy refuses.
    pub fn grpc_status(self, direction: crate::Direction) -> u8 {
        let unreadable = matches!(
            self,
            Reason::BodyInvalidProtobuf
                | Reason::BodyEncodingUnsupported
                | Reason::BodyInvalidJson
                | Reason::BodyNotJson
                | Reason::BodyUnreadable
                | Reason::BodyInvalidMultipart
                | Reason::BodyTypeAmbiguous
        );
        match (self, direction) {
            (Reason::InternalError, _) => 13,
            (Reason::BodyTooLarge, _) => 8,
            (_, crate::Direction::Request) if unreadable => 3,
            (_, crate::Direction::Response) if unreadable => 13,
            _ => 7,
        }
    }

    /// Every reason, for documentation and metrics.
    pub const ALL: [Reason; 41] = [
        Reason::ConsentGranted,
        Reason::NoticeBasis,
        Reason::ContractBasis,
        Reason::LegalBasis,
        Reason::PurposeMissing,
        Reason::PurposeUnknown,
        Reason::PurposeAmbiguous,
        Reason::PurposeInvalid,
        Reason::UserMissing,
        Reason::UserAmbiguous,
        Reason::UserInvalid,
        Reason::ConsentMissing,
        Reason::ReconsentRequired,
        Reason::UseStopped,
        Reason::CategoryNotInPurpose,
        Reason::ExplicitGrantMissing,
        Reason::ForbiddenDataPresent,
        Reason::BodyInvalidJson,
        Reason::BodyTooLarge,
        Reason::BodyEncodingUnsupported,
        Reason::BodyNotJson,
        Reason::BodyUnreadable,
        Reason::BodyInvalidMultipart,
        Reason::BodyTypeAmbiguous,
        Reason::SnapshotUnavailable,
        Reason::SnapshotStale,
        Reason::ConsentWithdrawn,
        Reason::Objected,
        Reason::ConsentVersionUnknown,
        Reason::ThirdPartyConsentMissing,
        Reason::ThirdPartyStopped,
        Reason::ForeignOutsourcingConsentMissing,
        Reason::GpcObjection,
        Reason::JointUseOnly,
        Reason::PartyNotJointUser,
        Reason::PurposeNotOnRoute,
        Reason::NotForThirdParties,
        Reason::BodyInvalidProtobuf,
        Reason::GrpcMethodUnknown,
        Reason::InternalError,
        Reason::LedgerUnavailable,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_reason_is_listed_once_with_a_message() {
        for r in Reason::ALL {
            assert!(!r.message().is_empty(), "{}", r.as_str());
            assert_eq!(r.message(), r.message().to_string().as_str());
        }
        for r in [
            Reason::BodyUnreadable,
            Reason::BodyInvalidMultipart,
            Reason::BodyTypeAmbiguous,
        ] {
            assert!(Reason::ALL.contains(&r), "{} missing from ALL", r.as_str());
        }
    }

    #[test]
    fn codes_are_unique_and_match_serde() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {}", r.as_str());
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
    }
}
