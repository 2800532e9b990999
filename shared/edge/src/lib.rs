//! Sextant's HTTP edge, shared by every function and by `sextant serve`: the state a
//! process builds once, the extractors that authenticate callers and parse bodies,
//! rate limits, the error responses, and the OpenAPI document's common parts. It calls
//! the domain (`sextant-domain`) and holds no rule of its own about runs or teams.

pub mod auth;
pub mod error;
pub mod http;
pub mod openapi;
pub mod rate_limit;
pub mod state;
