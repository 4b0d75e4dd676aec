//! Route handlers, one file per kind of call. Each is thin: it finds the fal URL a request
//! names and hands it to [`call::proxy`], which runs the whole pipeline.

pub mod call;
pub mod compat;
pub mod dispatch;
pub mod health;
pub mod me;
pub mod native;
pub mod ownership;
pub mod spend;
