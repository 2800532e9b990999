//! Page cursors: where a listing left off, handed to the client as an opaque token
//! (URL-safe base64 of JSON) so the shape behind it can change without breaking
//! clients that only pass it back.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Coded, ErrorCode};

pub fn encode(place: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(place).expect("a cursor serializes"))
}

/// A cursor this server did not hand out.
#[derive(Debug, thiserror::Error)]
#[error("the cursor is not one this server gave")]
pub struct InvalidCursor;

impl Coded for InvalidCursor {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidCursor
    }
}

/// Reads back what `encode` wrote; anything else is `InvalidCursor`.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, InvalidCursor> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(InvalidCursor)
}
