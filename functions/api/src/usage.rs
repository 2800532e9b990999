use axum::extract::State;
use serde::Deserialize;
use sextant_shared::auth::Caller;
use sextant_shared::billing::{self, BillingMonth, MonthUsage};
use sextant_shared::error::ApiResult;
use sextant_shared::http::Query;
use sextant_shared::state::AppState;
use time::OffsetDateTime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// `YYYY-MM`; this month when absent.
    month: Option<String>,
}

/// `GET /v1/usage?month=YYYY-MM`: the caller's team's usage and cost so far, by day.
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<MonthUsage>> {
    let month = match params.month {
        Some(text) => BillingMonth::parse(&text)?,
        None => BillingMonth::of(OffsetDateTime::now_utc()),
    };
    Ok(axum::Json(
        billing::usage(&state, &caller.tenant, month).await?,
    ))
}
