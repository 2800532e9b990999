use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use sextant_shared::auth::Caller;
use sextant_shared::auth::operator::Operator;
use sextant_shared::billing::{self, BillingMonth, MonthUsage, Report, TenantTotals};
use sextant_shared::error::{ApiError, ApiResult};
use sextant_shared::http::Query;
use sextant_shared::state::AppState;
use utoipa_axum::router::OpenApiRouter;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/v1/usage", get(usage))
        .route("/v1/billing/reports/{month}", get(report))
        .route("/v1/admin/usage", get(all_tenants))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// `YYYY-MM`; this month when absent.
    month: Option<String>,
}

impl UsageParams {
    fn month(&self, state: &AppState) -> ApiResult<BillingMonth> {
        match &self.month {
            Some(text) => BillingMonth::parse(text),
            None => Ok(BillingMonth::of(state.now())),
        }
    }
}

/// `GET /v1/usage?month=YYYY-MM`: the caller's team's usage and cost so far, by day.
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<MonthUsage>> {
    let month = params.month(&state)?;
    Ok(axum::Json(
        billing::usage(&state, &caller.tenant, month).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

/// `GET /v1/billing/reports/{YYYY-MM}`: the month's report, closed or draft.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(month): Path<String>,
    Query(params): Query<ReportParams>,
) -> ApiResult<Response> {
    let month = BillingMonth::parse(&month)?;
    let report = billing::report(&state, &caller.tenant, month).await?;
    report_response(report, params.format.as_deref())
}

/// A report as JSON (`None` or `json`) or as a CSV download (`csv`).
pub(crate) fn report_response(report: Report, format: Option<&str>) -> ApiResult<Response> {
    match format {
        None | Some("json") => Ok(axum::Json(report).into_response()),
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"sextant-{}.csv\"", report.month),
                ),
            ],
            report.to_csv(),
        )
            .into_response()),
        Some(_) => Err(ApiError::invalid("invalid_format", "format is json or csv")),
    }
}

#[derive(Debug, Serialize)]
pub struct OperatorUsage {
    month: String,
    tenants: Vec<TenantTotals>,
}

/// `GET /v1/admin/usage?month=YYYY-MM`: every tenant's totals, for the operator.
pub async fn all_tenants(
    State(state): State<AppState>,
    _: Operator,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<OperatorUsage>> {
    let month = params.month(&state)?;
    Ok(axum::Json(OperatorUsage {
        month: month.to_string(),
        tenants: billing::tenant_totals(&state, month).await?,
    }))
}
