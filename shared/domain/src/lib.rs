//! Sextant's domain: teams and their credentials, runs and their series, artifacts,
//! images, lineage, the job queue, saved workspace views, metering and billing. It
//! works over the storage ports (`sextant-storage`) and knows nothing of HTTP or of
//! AWS: the edge (`sextant-edge`) turns requests into calls here and errors into
//! responses.

pub mod accounts;
pub mod artifacts;
pub mod authentication;
pub mod billing;
pub mod budgets;
pub mod calendar;
pub mod credentials;
pub mod cursor;
pub mod deletion;
pub mod error;
pub mod floats;
pub mod ids;
pub mod images;
pub mod lineage;
pub mod metering;
pub mod postman;
pub mod projects;
pub mod queue;
pub mod report_delivery;
pub mod runs;
pub mod series;
pub mod sessions;
pub mod shares;
pub mod sweep;
pub mod telemetry;
pub mod tenancy;
pub mod usage;
pub mod views;
