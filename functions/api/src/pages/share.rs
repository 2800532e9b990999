//! `/r/{token}`: a shared run, for anyone holding the link. It shows the run and
//! nothing beyond it: no team, project, other runs or lineage, no forms, and artifact
//! links only when the share allows downloads. The token is in the path, so answers
//! are never cached and never named in a `Referer`.

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use sextant_edge::http::ClientAddr;
use sextant_edge::state::AppState;

use axum::extract::State;

use super::layout::{bare, error_page};
use super::plots::ViewSettings;
use super::runs::{Viewer, load, render};
use super::{PageError, PageResult};
use crate::shares::keep_private;

/// Errors answer as pages too, and as privately as the page itself.
fn private(result: PageResult) -> Response {
    keep_private(match result {
        Ok(response) => response,
        Err(PageError::Status(status, _)) if status == StatusCode::NOT_FOUND => (
            StatusCode::NOT_FOUND,
            error_page(
                StatusCode::NOT_FOUND,
                "This link does not open anything: it may have expired or been revoked.",
            ),
        )
            .into_response(),
        Err(err) => err.into_response(),
    })
}

/// `GET /r/{token}`.
pub async fn page(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    private(
        async {
            let shared = crate::shares::open(&state, &token, client).await?;
            let allow_downloads = shared.share.allow_downloads;
            let data = load(&state, &shared.tenant, shared.run, false).await?;
            let viewer = Viewer::Shared {
                token: &token,
                allow_downloads,
            };
            let settings = ViewSettings::from_query(query.as_deref());
            let body = render(&state, &data, &viewer, &settings);
            Ok(Html(bare(&data.record.name, body).into_string()).into_response())
        }
        .await,
    )
}
