use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sextant_domain::billing::{self, MonthUsage, Report, TenantTotals};
use sextant_domain::budgets::{self, Budget, BudgetStatus};
use sextant_domain::calendar::BillingMonth;
use sextant_domain::credentials::Caller;
use sextant_domain::error::{Error, ErrorCode};
use sextant_domain::report_delivery::{self, ReportDelivery};
use sextant_edge::auth::Admin;
use sextant_edge::auth::operator::Operator;
use sextant_edge::error::{ApiError, ApiResult};
use sextant_edge::http::{Json, PublicUrl, Query};
use sextant_edge::state::AppState;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(report))
        .routes(routes!(all_tenants))
        .routes(routes!(get_budget, set_budget))
        .routes(routes!(all_reports))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// `YYYY-MM` (UTC); this month when absent.
    #[param(example = "2026-11")]
    month: Option<String>,
}

impl UsageParams {
    fn month(&self, state: &AppState) -> Result<BillingMonth, Error> {
        match &self.month {
            Some(text) => Ok(BillingMonth::parse(text)?),
            None => Ok(BillingMonth::of(state.now())),
        }
    }
}

/// The caller's team's usage in a month and its cost so far, by day.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "get_usage",
    tag = "billing",
    security(("bearer" = ["read"])),
    params(UsageParams),
    responses((status = OK, body = MonthUsage))
)]
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<MonthUsage>> {
    let month = params.month(&state)?;
    Ok(axum::Json(
        billing::usage(&state.store, &state.settings.plan, &caller.tenant, month).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `json` (the default) or `csv`.
    #[param(schema_with = report_format)]
    format: Option<String>,
}

fn report_format() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("`json` (the default) or `csv`."))
        .enum_values(Some(["json", "csv"]))
        .default(Some("json".into()))
        .into()
}

/// The team's bill for a month: the closed report once the month is closed, else a
/// draft of it so far; as JSON, or as a CSV download.
#[utoipa::path(
    get,
    path = "/v1/billing/reports/{month}",
    operation_id = "get_billing_report",
    tag = "billing",
    security(("bearer" = ["read"])),
    params(
        ("month" = String, Path, description = "`YYYY-MM` (UTC).", example = "2026-11"),
        ReportParams,
    ),
    responses((
        status = OK,
        description = "The report: JSON by default; with `format=csv`, its line items and \
                       a total row as an attachment (`Content-Disposition: attachment; \
                       filename=\"sextant-YYYY-MM.csv\"`).",
        content(
            (Report = "application/json"),
            (String = "text/csv; charset=utf-8"),
        ),
    ))
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(month): Path<String>,
    Query(params): Query<ReportParams>,
) -> ApiResult<Response> {
    let month = BillingMonth::parse(&month)?;
    let report = billing::report(&state.store, &state.settings.plan, &caller.tenant, month).await?;
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
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidFormat,
            "format is json or csv",
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorUsage {
    /// `YYYY-MM`.
    #[schema(example = "2026-11")]
    month: String,
    /// Every tenant billed in the month, by tenant id.
    tenants: Vec<TenantTotals>,
}

/// Every team's totals for a month, for the deployment's operator.
#[utoipa::path(
    get,
    path = "/v1/admin/usage",
    operation_id = "list_tenant_usage",
    tag = "billing",
    security(("operator" = [])),
    params(UsageParams),
    responses((status = OK, body = OperatorUsage))
)]
pub async fn all_tenants(
    State(state): State<AppState>,
    _: Operator,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<OperatorUsage>> {
    let month = params.month(&state)?;
    Ok(axum::Json(OperatorUsage {
        month: month.to_string(),
        tenants: billing::tenant_totals(&state.store, &state.settings.plan, month).await?,
    }))
}

/// The team's monthly budget, this month's spend against it, the thresholds told
/// so far and whether its hard stop refuses log calls now.
#[utoipa::path(
    get,
    path = "/v1/budget",
    operation_id = "get_budget",
    tag = "billing",
    security(("bearer" = ["read"])),
    responses((status = OK, body = BudgetStatus))
)]
pub async fn get_budget(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<axum::Json<BudgetStatus>> {
    let plan = &state.settings.plan;
    let month = BillingMonth::of(state.now());
    let usage = billing::usage(&state.store, plan, &caller.tenant, month).await?;
    Ok(axum::Json(
        budgets::status(&state.store, plan, &caller.tenant, month, &usage).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// A month's budget in the plan's currency, as a decimal string with at most its
    /// minor digits (more than zero, at most a billion); null (or absent) lifts it.
    #[schema(value_type = Option<String>, format = "decimal", example = "25.00")]
    #[serde(default)]
    monthly_budget: Option<String>,
    /// Refuse log calls (429 `budget_exceeded`) once the month's spend reaches the
    /// budget. Needs a budget.
    hard_stop: bool,
}

/// Sets the team's monthly budget (admins only) and evaluates it at once: thresholds
/// the spend is already past are mailed to the admins now, the hard stop follows the
/// new amount (raising or lifting the budget lets logging resume at once), and
/// thresholds the new budget puts the spend below are told again when reached.
#[utoipa::path(
    put,
    path = "/v1/budget",
    operation_id = "set_budget",
    tag = "billing",
    security(("bearer" = ["admin"])),
    request_body = SetBudget,
    responses(
        (status = OK, body = BudgetStatus),
        (
            status = BAD_REQUEST,
            description = "Not an amount, zero or less, more digits than the currency's \
                           minor unit, more than a billion, or a hard stop without a budget \
                           (`invalid_budget`)."
        ),
    )
)]
pub async fn set_budget(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PublicUrl(base): PublicUrl,
    Json(request): Json<SetBudget>,
) -> ApiResult<axum::Json<BudgetStatus>> {
    let plan = &state.settings.plan;
    let budget = Budget::parse(plan, request.monthly_budget.as_deref(), request.hard_stop)?;
    let usage_page = budgets::usage_page(&base);
    Ok(axum::Json(
        state
            .set_budget(&caller.tenant, budget, &usage_page)
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorReports {
    /// `YYYY-MM`.
    #[schema(example = "2026-11")]
    month: String,
    /// Every tenant billed in the month, by tenant id, with its report's delivery to
    /// the operator's webhook.
    tenants: Vec<ReportDelivery>,
}

/// Every team's report for a month and its delivery to the report webhook, for the
/// deployment's operator.
#[utoipa::path(
    get,
    path = "/v1/admin/reports",
    operation_id = "list_tenant_reports",
    tag = "billing",
    security(("operator" = [])),
    params(UsageParams),
    responses((status = OK, body = OperatorReports))
)]
pub async fn all_reports(
    State(state): State<AppState>,
    _: Operator,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<OperatorReports>> {
    let month = params.month(&state)?;
    Ok(axum::Json(OperatorReports {
        month: month.to_string(),
        tenants: report_delivery::listing(&state.store, &state.settings.plan, month).await?,
    }))
}
