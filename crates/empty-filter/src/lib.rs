//! An HTTP filter that continues every callback: what proxy-wasm costs in Envoy before any
//! work is done. Benchmarks compare the consent filter against it.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::ContextType;

    struct EmptyRoot;
    struct EmptyHttp;

    impl Context for EmptyRoot {}
    impl RootContext for EmptyRoot {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(EmptyHttp))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }
    impl Context for EmptyHttp {}
    impl HttpContext for EmptyHttp {}

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot) });
    }}
}
