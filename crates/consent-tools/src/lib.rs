//! Host tools around the consent filter. For now: the demo backend that `make run`
//! starts and the end-to-end tests run in-process as their real upstream.

pub mod demo_backend;
pub mod ext_authz;
