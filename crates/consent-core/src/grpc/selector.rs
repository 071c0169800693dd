//! Protobuf field selectors, as a policy category lists them under `protobuf`:
//!
//! - `saitama.v1.Profile.email`: one field of one message (the message's full name, then
//!   the field's name as declared);
//! - `..email`: every field of that name in any message, at any depth (ASCII case folded;
//!   a field's JSON name, `deviceId` for `device_id`, matches too).
//!
//! Fields inside repeated fields and map values are reached because the walker descends
//! into every message-typed field, repeated or not, and into map entries (whose fields are
//! `key` and `value`). A selector naming a repeated or map field acts on the whole field.

use crate::policy::categories::CategoryIdx;

/// A parsed protobuf selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoSelector {
    /// One field of one message: `package.Message.field`.
    Field {
        /// Full name of the message, e.g. `saitama.v1.Profile`.
        message: String,
        /// The field's declared name, e.g. `email`.
        field: String,
    },
    /// Every field with this name, in any message: `..name` (stored lowercase).
    AnyDepth(String),
}

/// One protobuf selector of a policy category, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorySelector {
    /// The category it finds.
    pub category: CategoryIdx,
    /// The selector.
    pub selector: ProtoSelector,
    /// Its place in the configuration, e.g. `policy.categories[5].protobuf[0]`.
    pub at: String,
}

fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a protobuf selector; the error says what is wrong (without the input).
pub fn parse_proto_selector(text: &str) -> Result<ProtoSelector, String> {
    if let Some(name) = text.strip_prefix("..") {
        if !is_ident(name) {
            return Err(
                "a `..` selector names one field: letters, digits and `_`, e.g. `..email`"
                    .to_string(),
            );
        }
        return Ok(ProtoSelector::AnyDepth(name.to_ascii_lowercase()));
    }
    let Some((message, field)) = text.rsplit_once('.') else {
        return Err(
            "expected `package.Message.field` or `..field` (e.g. `saitama.v1.Profile.email`)"
                .to_string(),
        );
    };
    if !message.split('.').all(is_ident) || !is_ident(field) {
        return Err(
            "expected `package.Message.field` or `..field`: dot-separated names of letters, digits and `_`"
                .to_string(),
        );
    }
    Ok(ProtoSelector::Field {
        message: message.to_string(),
        field: field.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn qualified_fields_split_at_the_last_dot() {
        assert_eq!(
            parse_proto_selector("saitama.v1.Profile.email"),
            Ok(ProtoSelector::Field {
                message: "saitama.v1.Profile".into(),
                field: "email".into()
            })
        );
        assert_eq!(
            parse_proto_selector("Top.x_1"),
            Ok(ProtoSelector::Field {
                message: "Top".into(),
                field: "x_1".into()
            })
        );
    }

    #[test]
    fn any_depth_names_are_folded_to_lowercase() {
        assert_eq!(
            parse_proto_selector("..Device_ID"),
            Ok(ProtoSelector::AnyDepth("device_id".into()))
        );
    }

    #[test]
    fn malformed_selectors_are_rejected() {
        for bad in [
            "",
            "email",
            "..",
            "..a.b",
            ".saitama.Profile.email",
            "a..b",
            "a.b.",
            "$..email",
            "a.1b",
            "..e-mail",
            "a.b[0]",
        ] {
            assert!(parse_proto_selector(bad).is_err(), "{bad}");
        }
    }
}
