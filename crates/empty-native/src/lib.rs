//! empty-native: a native Envoy dynamic module (HTTP filter) that does nothing, the native
//! counterpart of `crates/empty-filter`'s empty wasm filter and a floor contender of the
//! benchmarks (`bench/compare.py`, `bench/host_call_costs.py`: `empty-native`).
//!
//! It exports what `crates/consent-native` exports (the program-init hook and every HTTP
//! filter hook Envoy 1.40 looks up), with the same signatures. Every stream hook returns
//! `Continue`; the rest do nothing. It calls back into Envoy nowhere and allocates nothing:
//! the configuration and every stream's filter are the addresses of static bytes, which
//! Envoy only passes back. What it costs over plain Envoy is Envoy's dynamic-module
//! machinery alone (the filter in the chain, one call per hook), the floor under the native
//! consent module's targets.
//!
//! Under `filter_name: host_calls` it is the second native floor (`floor-native`, see
//! `floor.rs`): the Envoy calls the consent module makes on its header-only path, and no
//! decision.
//!
//! Build: `make empty-native` (`target/release/libempty_native.so`); Envoy loads it as
//! `dynamic_module_config: { name: empty_native }` from `$ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.

// `#[no_mangle]` counts as unsafe code.
#[allow(unsafe_code)]
mod hooks;

// The floor's calls into Envoy.
#[allow(unsafe_code)]
mod floor;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::ptr::{null, null_mut};

    use super::hooks::*;

    /// consent-native's hooks and ABI bindings, which this module must keep up with.
    const NATIVE_HOOKS: &str = include_str!("../../consent-native/src/hooks.rs");
    const NATIVE_ABI: &str = include_str!("../../consent-native/src/abi.rs");

    /// Names of the `extern "C" fn`s of a source file that start with `envoy_dynamic_module_on_`
    /// (as consent-native's `tests/abi.rs` reads them).
    fn hooks_of(source: &str) -> BTreeSet<String> {
        source
            .split("extern \"C\" fn ")
            .skip(1)
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|name| name.starts_with("envoy_dynamic_module_on_"))
            .collect()
    }

    #[test]
    fn exports_the_hooks_consent_native_exports() {
        let ours = hooks_of(include_str!("hooks.rs"));
        let theirs = hooks_of(NATIVE_HOOKS);
        assert!(theirs.len() >= 20, "{theirs:?}");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_abi_version_is_consent_natives() {
        // SAFETY: the pointer is a static NUL-terminated byte string.
        #[allow(unsafe_code)]
        let text = unsafe { std::ffi::CStr::from_ptr(envoy_dynamic_module_on_program_init()) };
        let version = text.to_str().unwrap();
        assert_eq!(version, "1.40.0");
        let line = format!("static ABI_VERSION: &[u8] = b\"{version}\\0\";");
        assert!(
            NATIVE_HOOKS.contains(&line),
            "consent-native no longer has {line}"
        );
    }

    #[test]
    fn every_stream_hook_continues() {
        for status in ["headers_status", "body_status", "trailers_status"] {
            let module = NATIVE_ABI
                .split(&format!("pub mod {status} {{"))
                .nth(1)
                .and_then(|rest| rest.split("\n}").next())
                .unwrap_or_else(|| panic!("no {status} in consent-native's abi.rs"));
            assert!(
                module.contains(&format!("pub const CONTINUE: u32 = {CONTINUE};")),
                "{status}: {module}"
            );
        }
        let (envoy, module) = (null_mut(), null());
        for end in [false, true] {
            assert_eq!(
                envoy_dynamic_module_on_http_filter_request_headers(envoy, module, end),
                CONTINUE
            );
            assert_eq!(
                envoy_dynamic_module_on_http_filter_request_body(envoy, module, end),
                CONTINUE
            );
            assert_eq!(
                envoy_dynamic_module_on_http_filter_response_headers(envoy, module, end),
                CONTINUE
            );
            assert_eq!(
                envoy_dynamic_module_on_http_filter_response_body(envoy, module, end),
                CONTINUE
            );
        }
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_trailers(envoy, module),
            CONTINUE
        );
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_trailers(envoy, module),
            CONTINUE
        );
    }

    fn buffer(bytes: &'static [u8]) -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    fn calls() -> Vec<String> {
        crate::floor::test_envoy::CALLS.with(|c| c.borrow_mut().drain(..).collect())
    }

    #[test]
    fn a_filter_named_host_calls_is_the_floor_and_makes_the_consent_modules_calls() {
        let config = envoy_dynamic_module_on_http_filter_config_new(
            null_mut(),
            buffer(b"host_calls"),
            buffer(b""),
        );
        let filter = envoy_dynamic_module_on_http_filter_new(config, null_mut());
        let _ = calls();
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_headers(null_mut(), filter, true),
            CONTINUE
        );
        assert_eq!(
            calls(),
            [
                "get_headers_size",
                "get_headers",
                "get_attribute 37",
                "get_attribute 35",
                "add_header 18"
            ]
        );
        crate::floor::test_envoy::RESPONSE_TYPE.with(|t| *t.borrow_mut() = b"application/json");
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_headers(null_mut(), filter, false),
            crate::floor::status::STOP_ITERATION
        );
        assert_eq!(
            calls(),
            ["get_headers_size", "get_headers", "set_header 14 null=true"]
        );
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_body(null_mut(), filter, false),
            crate::floor::status::STOP_ITERATION_AND_BUFFER
        );
        assert!(calls().is_empty(), "nothing is read before the end");
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_body(null_mut(), filter, true),
            CONTINUE
        );
        assert_eq!(
            calls(),
            [
                "received_buffered_response_body",
                "get_body_chunks_size 2",
                "get_body_chunks",
                "drain_body 7",
                "append_body 7"
            ],
            "a JSON body is read and written back unchanged"
        );
        envoy_dynamic_module_on_http_filter_destroy(filter);
        envoy_dynamic_module_on_http_filter_config_destroy(config);
    }

    #[test]
    fn the_floor_passes_a_response_that_ends_with_its_headers() {
        let config = envoy_dynamic_module_on_http_filter_config_new(
            null_mut(),
            buffer(b"host_calls"),
            buffer(b""),
        );
        let filter = envoy_dynamic_module_on_http_filter_new(config, null_mut());
        let _ = calls();
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_headers(null_mut(), filter, true),
            CONTINUE
        );
        assert_eq!(calls(), ["get_headers_size", "get_headers"]);
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_body(null_mut(), filter, true),
            CONTINUE
        );
        assert!(calls().is_empty());
        envoy_dynamic_module_on_http_filter_destroy(filter);
    }

    #[test]
    fn any_other_filter_name_is_the_empty_module_and_calls_nothing() {
        let config = envoy_dynamic_module_on_http_filter_config_new(
            null_mut(),
            buffer(b"consent"),
            buffer(b""),
        );
        let filter = envoy_dynamic_module_on_http_filter_new(config, null_mut());
        let _ = calls();
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_headers(null_mut(), filter, false),
            CONTINUE
        );
        assert_eq!(
            envoy_dynamic_module_on_http_filter_response_headers(null_mut(), filter, false),
            CONTINUE
        );
        assert!(calls().is_empty());
        envoy_dynamic_module_on_http_filter_destroy(filter);
    }

    /// The floor's callback declarations, as written in consent-native's bindings.
    #[test]
    fn the_floors_callbacks_have_consent_natives_signatures() {
        let normalise = |s: &str| s.split_whitespace().collect::<String>().replace(",)", ")");
        let floor = include_str!("floor.rs");
        let block = floor
            .split("extern \"C\" {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap();
        let abi = normalise(&NATIVE_ABI.replace("pub fn ", "fn "));
        let mut seen = 0;
        for decl in block
            .split(';')
            .map(str::trim)
            .filter(|d| d.starts_with("fn "))
        {
            let decl = normalise(decl);
            assert!(
                abi.contains(&decl),
                "not in consent-native's abi.rs: {decl}"
            );
            seen += 1;
        }
        assert_eq!(seen, 11);
    }

    #[test]
    fn configuration_and_filters_are_non_null() {
        let empty = EnvoyBuffer {
            ptr: null(),
            length: 0,
        };
        let config = envoy_dynamic_module_on_http_filter_config_new(null_mut(), empty, empty);
        assert!(!config.is_null());
        let filter = envoy_dynamic_module_on_http_filter_new(config, null_mut());
        assert!(!filter.is_null());
        envoy_dynamic_module_on_http_filter_stream_complete(null_mut(), filter);
        envoy_dynamic_module_on_http_filter_destroy(filter);
        envoy_dynamic_module_on_http_filter_config_destroy(config);
    }
}
