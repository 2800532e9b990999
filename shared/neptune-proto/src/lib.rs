//! The messages of Neptune's ingest API (`neptune-api`'s `.proto` files, vendored under
//! `proto/`), as prost generates them: what `neptune-scale` sends to
//! `POST /api/client/v1/ingest` (`RunOperation`) and `/ingest/check`
//! (`RequestIdList`), and what it reads back (`SubmitResponse`, `BulkRequestStatus`).
//!
//! The modules follow the protobuf packages, since the generated code names types in
//! other packages by relative paths.

#![allow(missing_debug_implementations, unused_qualifications, clippy::all)]

pub mod google_rpc {
    include!(concat!(env!("OUT_DIR"), "/google_rpc.rs"));
}

pub mod neptune {
    pub mod ingest {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/neptune.ingest.v1.rs"));

            pub mod r#pub {
                include!(concat!(env!("OUT_DIR"), "/neptune.ingest.v1.r#pub.rs"));
            }
        }
    }
}

pub use google_rpc::Code;
pub use neptune::ingest::v1::r#pub::{
    BulkRequestStatus, RequestId, RequestIdList, RequestStatus, RunOperation, SubmitResponse,
    request_status::CodeByCount, run_operation::Operation,
};
pub use neptune::ingest::v1::{
    IngestCode, ModifySet, ModifyStringSet, Run as CreateRun, SetOperation, Step, StringSet,
    UpdateRunSnapshot, UpdateRunSnapshots, Value, modify_set, value,
};
pub use prost::Message;
pub use prost_types::Timestamp;
