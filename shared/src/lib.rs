//! Sextant's shared library: the domain, tenancy and auth, the storage ports and
//! their adapters, and the HTTP edge every function uses.

pub mod accounts;
pub mod artifacts;
pub mod auth;
pub mod authentication;
pub mod billing;
pub mod calendar;
pub mod credentials;
pub mod cursor;
pub mod deletion;
pub mod error;
pub mod floats;
pub mod http;
pub mod ids;
pub mod images;
pub mod lineage;
pub mod metering;
pub mod openapi;
pub mod projects;
pub mod queue;
pub mod rate_limit;
pub mod runs;
pub mod series;
pub mod shares;
pub mod state;
pub mod sweep;
pub mod telemetry;
pub mod tenancy;
pub mod usage;
