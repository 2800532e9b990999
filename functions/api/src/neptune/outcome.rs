//! What became of an ingest request, carried in its request id.
//!
//! Neptune's client submits an operation, keeps the request id it is given, and asks
//! `POST /api/client/v1/ingest/check` later how the request went. Sextant applies an
//! operation before answering it, so its outcome is known when the id is made: the id
//! carries it. `{digest}` is a request whose every field was stored, and
//! `{digest}.{code}x{count}...` one where `count` fields were refused with Neptune's
//! `IngestCode` `code`. Nothing is kept to answer a
//! check, so a check costs no read, and ids never expire. An id says nothing but the
//! fate of the request its holder sent, so a made-up one misleads only its maker.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sextant_domain::credentials::Caller;
use sextant_domain::error::ErrorCode;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_neptune_proto::{
    BulkRequestStatus, Code, CodeByCount, IngestCode, Message, RequestIdList, RequestStatus,
};

/// Fields stored and refused, by `IngestCode`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Outcome {
    stored: u64,
    refused: BTreeMap<i32, u64>,
}

impl Outcome {
    pub(super) fn accept(&mut self, fields: u64) {
        self.stored += fields;
    }

    pub(super) fn refuse(&mut self, code: IngestCode, fields: u64) {
        if fields > 0 {
            *self.refused.entry(code as i32).or_default() += fields;
        }
    }

    pub(super) fn count(&mut self, field: Result<(), IngestCode>) {
        match field {
            Ok(()) => self.accept(1),
            Err(code) => self.refuse(code, 1),
        }
    }

    /// Fields counted as stored that a later step refused.
    pub(super) fn undo_accepted(&mut self, fields: u64, code: IngestCode) {
        self.stored = self.stored.saturating_sub(fields);
        self.refuse(code, fields);
    }

    pub(super) fn request_id(&self, digest: &str) -> String {
        let mut id = digest.to_owned();
        for (code, count) in &self.refused {
            id.push_str(&format!(".{code}x{count}"));
        }
        id
    }

    /// The outcome an id carries; `None` for an id Sextant did not make.
    fn of(id: &str) -> Option<Self> {
        let mut parts = id.split('.');
        let digest = parts.next()?;
        if digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut outcome = Outcome::default();
        for part in parts {
            let (code, count) = part.split_once('x')?;
            let code = IngestCode::try_from(code.parse::<i32>().ok()?).ok()?;
            outcome.refuse(code, count.parse().ok()?);
        }
        Some(outcome)
    }

    fn status(&self) -> RequestStatus {
        let refused = self.refused.iter().map(|(&code, &count)| CodeByCount {
            code: grpc_code(code) as i32,
            count: count as i64,
            detail: code,
        });
        let stored = CodeByCount {
            code: Code::Ok as i32,
            count: self.stored as i64,
            detail: IngestCode::Ok as i32,
        };
        RequestStatus {
            code_by_count: std::iter::once(stored).chain(refused).collect(),
            shared_error_message: None,
        }
    }
}

fn grpc_code(code: i32) -> Code {
    match IngestCode::try_from(code) {
        Ok(IngestCode::ProjectNotFound | IngestCode::RunNotFound) => Code::NotFound,
        Ok(IngestCode::FieldTypeConflicting | IngestCode::RunConflicting) => {
            Code::FailedPrecondition
        }
        Ok(IngestCode::IngestSuspended) => Code::ResourceExhausted,
        _ => Code::InvalidArgument,
    }
}

/// `POST /api/client/v1/ingest/check?projectIdentifier=`: a status for each request id,
/// in order. Every request was done when its id was handed out; an id Sextant did not
/// make is not found.
pub(super) async fn check(_caller: Caller, body: Bytes) -> ApiResult<Response> {
    let ids = RequestIdList::decode(body).map_err(|err| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the body is not a Neptune RequestIdList: {err}"),
        )
    })?;
    let statuses = ids
        .ids
        .iter()
        .map(|id| match Outcome::of(&id.value) {
            Some(outcome) => outcome.status(),
            None => RequestStatus {
                code_by_count: vec![CodeByCount {
                    code: Code::NotFound as i32,
                    count: 1,
                    detail: IngestCode::Ok as i32,
                }],
                shared_error_message: Some("no request of this id was made".to_owned()),
            },
        })
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        BulkRequestStatus { statuses }.encode_to_vec(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_request_id_carries_what_was_stored_and_refused() {
        let mut outcome = Outcome::default();
        outcome.accept(5);
        outcome.refuse(IngestCode::FieldTypeConflicting, 2);
        outcome.undo_accepted(1, IngestCode::SeriesStepInvalid);
        let id = outcome.request_id(DIGEST);
        assert_eq!(id, format!("{DIGEST}.21x2.41x1"));
        let read = Outcome::of(&id).unwrap();
        assert_eq!(read.refused, outcome.refused);
        let status = read.status();
        let codes: Vec<(i32, i64, i32)> = status
            .code_by_count
            .iter()
            .map(|c| (c.code, c.count, c.detail))
            .collect();
        assert!(codes.contains(&(Code::FailedPrecondition as i32, 2, 21)));
        assert!(codes.contains(&(Code::InvalidArgument as i32, 1, 41)));
    }

    #[test]
    fn a_request_with_every_field_stored_reads_as_done() {
        let id = Outcome::default().request_id(DIGEST);
        assert_eq!(id, DIGEST);
        let status = Outcome::of(&id).unwrap().status();
        assert!(
            status
                .code_by_count
                .iter()
                .all(|c| c.code == Code::Ok as i32)
        );
    }

    #[test]
    fn an_id_sextant_did_not_make_is_not_read_as_an_outcome() {
        for id in [
            "",
            "abc",
            &format!("{DIGEST}.21"),
            &format!("{DIGEST}.999x1"),
            &format!("{DIGEST}.21xz"),
        ] {
            assert_eq!(Outcome::of(id), None, "{id:?}");
        }
    }
}
