//! Host tools around the consent filter: the demo backend that `make run` starts and the
//! end-to-end tests run in-process as their real upstream (and as a consent source that
//! signs what it serves), and the ext_authz contender of the benchmarks.

pub mod demo_backend;
pub mod ext_authz;
pub mod signing;
