//! Pay-per-use pricing over the hourly usage records: logged points and storage
//! GB-hours, each with a monthly free allowance. Money is exact decimals in the plan's
//! currency, rounded to minor units per line item (half away from zero) and sent as
//! strings, never floats.
//!
//! Storage is priced per GB-month and charged per GB-hour: a GB-month is 730 GB-hours
//! (AWS's convention), and a GB is 10^9 bytes. It is measured in byte-seconds, exact
//! integers (`metering`), and shown in GB-hours to nine places (a byte-hour): the
//! amounts are priced from the byte-seconds themselves.

use futures::{StreamExt, TryStreamExt};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::calendar::BillingMonth;
use crate::error::{Coded, Error, ErrorCode};
use crate::ids::TenantId;
use crate::metering::{self, HourlyUsage};
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::blob::BlobError;
use sextant_storage::blob::BlobKey;
use sextant_storage::kv::{Condition, Key, Query, StoreError};
use sextant_storage::records::{doc_item, get_doc};

pub const HOURS_PER_GB_MONTH: u32 = 730;
const BYTES_PER_GB: u64 = 1_000_000_000;

/// Why billing could not answer: every failure is ours (a report that does not read
/// or write, the store), never the client's.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("a stored monthly report does not read back: {0}")]
    Report(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl Coded for BillingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Report(_) => ErrorCode::Internal,
            Self::Store(err) => err.code(),
            Self::Blob(err) => err.code(),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Self::Report(err) => Error::internal(err),
            Self::Store(err) => err.into(),
            Self::Blob(err) => err.into(),
        }
    }
}

type Result<T, E = BillingError> = std::result::Result<T, E>;

/// What a team pays. The defaults are the published plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PricePlan {
    pub currency: String,
    /// Digits after the decimal point of the currency's minor unit (2 for cents).
    pub minor_digits: u32,
    pub per_million_points: Decimal,
    pub per_gb_month: Decimal,
    /// Points free each month.
    pub free_points: u64,
    /// GB-months free each month.
    pub free_gb_months: Decimal,
    /// Most points a team may log in a month; past it, log calls are refused.
    pub monthly_points_cap: Option<u64>,
}

impl Default for PricePlan {
    fn default() -> Self {
        Self {
            currency: "USD".into(),
            minor_digits: 2,
            // $0.50 per million points, $0.10 per GB-month.
            per_million_points: Decimal::new(50, 2),
            per_gb_month: Decimal::new(10, 2),
            free_points: 10_000_000,
            free_gb_months: Decimal::from(5),
            monthly_points_cap: None,
        }
    }
}

impl PricePlan {
    /// The plan from `SEXTANT_PLAN_*` environment variables, each defaulting to the
    /// published plan: `CURRENCY` (ISO 4217 code), `MINOR_DIGITS`,
    /// `PRICE_PER_MILLION_POINTS`, `PRICE_PER_GB_MONTH` (decimals), `FREE_POINTS`,
    /// `FREE_GB_MONTHS` and `MONTHLY_POINTS_CAP` (unset: no cap).
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(|name| std::env::var(format!("SEXTANT_PLAN_{name}")).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        fn parsed<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
        ) -> anyhow::Result<Option<T>> {
            var(name)
                .map(|text| {
                    text.trim().parse::<T>().map_err(|_| {
                        anyhow::anyhow!("SEXTANT_PLAN_{name} is not a valid value: {text:?}")
                    })
                })
                .transpose()
        }
        let defaults = Self::default();
        let plan = Self {
            currency: var("CURRENCY").unwrap_or(defaults.currency),
            minor_digits: parsed(&var, "MINOR_DIGITS")?.unwrap_or(defaults.minor_digits),
            per_million_points: parsed(&var, "PRICE_PER_MILLION_POINTS")?
                .unwrap_or(defaults.per_million_points),
            per_gb_month: parsed(&var, "PRICE_PER_GB_MONTH")?.unwrap_or(defaults.per_gb_month),
            free_points: parsed(&var, "FREE_POINTS")?.unwrap_or(defaults.free_points),
            free_gb_months: parsed(&var, "FREE_GB_MONTHS")?.unwrap_or(defaults.free_gb_months),
            monthly_points_cap: parsed(&var, "MONTHLY_POINTS_CAP")?,
        };
        anyhow::ensure!(
            plan.currency.len() == 3 && plan.currency.bytes().all(|b| b.is_ascii_uppercase()),
            "SEXTANT_PLAN_CURRENCY is a three-letter code such as USD, not {:?}",
            plan.currency
        );
        anyhow::ensure!(
            plan.minor_digits <= 4,
            "SEXTANT_PLAN_MINOR_DIGITS is at most 4"
        );
        for (name, amount) in [
            ("PRICE_PER_MILLION_POINTS", plan.per_million_points),
            ("PRICE_PER_GB_MONTH", plan.per_gb_month),
            ("FREE_GB_MONTHS", plan.free_gb_months),
        ] {
            anyhow::ensure!(
                !amount.is_sign_negative(),
                "SEXTANT_PLAN_{name} is negative"
            );
        }
        Ok(plan)
    }
}

/// A day's usage (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Day {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub date: String,
    pub points: u64,
    #[schema(value_type = String, format = "decimal", example = "26.4")]
    pub gb_hours: Decimal,
    /// The storage exactly: bytes times the seconds they were stored.
    pub byte_seconds: u64,
    /// Some of the day's hours are not rolled up yet: their figures are provisional.
    pub provisional: bool,
}

/// The part of a month's figures from hours not rolled up yet, read from the live
/// counters (`metering::provisional`): the next hourly run makes them final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provisional {
    /// The first hour not rolled up yet.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    pub points: u64,
    #[schema(value_type = String, format = "decimal", example = "2")]
    pub gb_hours: Decimal,
    #[serde(default)]
    pub byte_seconds: u64,
}

/// One priced quantity. Decimals are strings, exact; amounts are rounded to the
/// currency's minor unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineItem {
    /// `logged points` or `storage`.
    pub description: String,
    #[schema(value_type = String, format = "decimal", example = "13000001")]
    pub quantity: Decimal,
    /// `point` or `GB-hour`.
    pub unit: String,
    #[schema(value_type = String, format = "decimal", example = "0.0000005")]
    pub unit_price: Decimal,
    /// How much of the quantity is free this month.
    #[schema(value_type = String, format = "decimal", example = "10000000")]
    pub free_allowance: Decimal,
    #[schema(value_type = String, format = "decimal", example = "1.50")]
    pub amount: Decimal,
}

/// A tenant's usage in a month so far, priced.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthUsage {
    /// `YYYY-MM`.
    #[schema(example = "2026-11")]
    pub month: String,
    pub points: u64,
    #[schema(value_type = String, format = "decimal", example = "7300")]
    pub gb_hours: Decimal,
    /// The storage exactly: bytes times the seconds they were stored.
    pub byte_seconds: u64,
    /// The days with usage, in order.
    pub days: Vec<Day>,
    pub line_items: Vec<LineItem>,
    #[schema(value_type = String, format = "decimal", example = "2.00")]
    pub total: Decimal,
    /// The ISO 4217 code of the amounts.
    #[schema(example = "USD")]
    pub currency: String,
    /// What of the figures above is provisional; null once every hour is rolled up.
    #[schema(required = true)]
    pub provisional: Option<Provisional>,
}

const BYTE_SECONDS_PER_GB_HOUR: u64 = BYTES_PER_GB * 3600;

/// Byte-seconds as GB-hours, to a byte-hour (nine places): a GB-hour is not a whole
/// number of byte-seconds' worth of decimals.
pub fn gb_hours(byte_seconds: u64) -> Decimal {
    (Decimal::from(byte_seconds) / Decimal::from(BYTE_SECONDS_PER_GB_HOUR))
        .round_dp(9)
        .normalize()
}

impl PricePlan {
    /// To minor units, shown with all their digits (`0.00`, not `0`).
    fn round(&self, amount: Decimal) -> Decimal {
        let mut rounded = amount
            .round_dp_with_strategy(self.minor_digits, RoundingStrategy::MidpointAwayFromZero);
        rounded.rescale(self.minor_digits);
        rounded
    }

    /// Prices a month's points and storage.
    pub fn line_items(&self, points: u64, byte_seconds: u64) -> Vec<LineItem> {
        let free_points = Decimal::from(points.min(self.free_points));
        let billed_points = Decimal::from(points) - free_points;
        let per_point = self.per_million_points / Decimal::from(1_000_000);
        let exact_gb_hours = Decimal::from(byte_seconds) / Decimal::from(BYTE_SECONDS_PER_GB_HOUR);
        let free_gb_hours = self.free_gb_months * Decimal::from(HOURS_PER_GB_MONTH);
        let per_gb_hour = self.per_gb_month / Decimal::from(HOURS_PER_GB_MONTH);
        vec![
            LineItem {
                description: "logged points".into(),
                quantity: Decimal::from(points),
                unit: "point".into(),
                unit_price: per_point,
                free_allowance: free_points,
                amount: self.round(billed_points * per_point),
            },
            LineItem {
                description: "storage".into(),
                quantity: gb_hours(byte_seconds),
                unit: "GB-hour".into(),
                unit_price: per_gb_hour,
                free_allowance: free_gb_hours.min(gb_hours(byte_seconds)),
                amount: self
                    .round((exact_gb_hours - free_gb_hours).max(Decimal::ZERO) * per_gb_hour),
            },
        ]
    }

    /// What `points` and `byte_seconds` cost at the plan's prices, before any free
    /// allowance: what one run's usage costs (the month's allowances belong to the team).
    pub fn cost(&self, points: u64, byte_seconds: u64) -> Decimal {
        let points = Decimal::from(points) * self.per_million_points / Decimal::from(1_000_000);
        let storage = Decimal::from(byte_seconds) * self.per_gb_month
            / Decimal::from(BYTE_SECONDS_PER_GB_HOUR)
            / Decimal::from(HOURS_PER_GB_MONTH);
        self.round(points + storage)
    }

    /// Prices a month's rolled-up hours and, after them, its `provisional` ones.
    pub fn price(
        &self,
        month: BillingMonth,
        hours: &[HourlyUsage],
        provisional: &[HourlyUsage],
    ) -> MonthUsage {
        let mut days: Vec<Day> = Vec::new();
        let all = hours
            .iter()
            .map(|hour| (hour, false))
            .chain(provisional.iter().map(|hour| (hour, true)));
        for (hour, is_provisional) in all {
            let date = hour.hour.date().to_string();
            if days.last().is_none_or(|day| day.date != date) {
                days.push(Day {
                    date,
                    points: 0,
                    gb_hours: Decimal::ZERO,
                    byte_seconds: 0,
                    provisional: false,
                });
            }
            let day = days.last_mut().expect("just pushed");
            day.points += hour.points;
            day.byte_seconds += hour.byte_seconds();
            day.provisional |= is_provisional;
        }
        for day in &mut days {
            day.gb_hours = gb_hours(day.byte_seconds);
        }
        let provisional = provisional.first().map(|first| {
            let byte_seconds = provisional.iter().map(HourlyUsage::byte_seconds).sum();
            Provisional {
                since: first.hour,
                points: provisional.iter().map(|hour| hour.points).sum(),
                gb_hours: gb_hours(byte_seconds),
                byte_seconds,
            }
        });
        let points = days.iter().map(|d| d.points).sum();
        let byte_seconds = days.iter().map(|d| d.byte_seconds).sum();
        let line_items = self.line_items(points, byte_seconds);
        let total = self.round(line_items.iter().map(|item| item.amount).sum());
        MonthUsage {
            month: month.to_string(),
            points,
            gb_hours: gb_hours(byte_seconds),
            byte_seconds,
            days,
            line_items,
            total,
            currency: self.currency.clone(),
            provisional,
        }
    }
}

/// What a run (or several) has logged and stored so far, and what that costs at the
/// plan's prices before the team's free allowances, which belong to the month, not to
/// any run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunCost {
    pub points: u64,
    /// Bytes stored now: series, images and artifacts.
    pub bytes: u64,
    /// Bytes times the seconds they were stored, so far.
    pub byte_seconds: u64,
    #[schema(value_type = String, format = "decimal", example = "0.42")]
    pub cost: Decimal,
    /// The ISO 4217 code of the cost.
    #[schema(example = "USD")]
    pub currency: String,
}

impl PricePlan {
    /// What runs with these counters have cost through `now`.
    pub fn run_cost<'a>(
        &self,
        runs: impl IntoIterator<Item = &'a crate::usage::RunUsage>,
        now: OffsetDateTime,
    ) -> RunCost {
        let mut total = RunCost {
            currency: self.currency.clone(),
            ..RunCost::default()
        };
        for run in runs {
            total.points += run.points;
            total.bytes += run.bytes;
            total.byte_seconds += run.byte_seconds(now);
        }
        total.cost = self.cost(total.points, total.byte_seconds);
        total
    }
}

/// A tenant's month so far: the hours rolled up, and after them the hours not rolled
/// up yet from the live counters, marked provisional.
pub async fn usage(
    store: &Store,
    plan: &PricePlan,
    tenant: &Tenant,
    month: BillingMonth,
) -> Result<MonthUsage> {
    let hours = metering::hourly(store, tenant, month.start(), month.end()).await?;
    let mut provisional =
        metering::provisional(store, tenant, month.start(), month.end(), store.now()).await?;
    // An hour rolled up while this was read is final, not provisional.
    let rolled: std::collections::HashSet<OffsetDateTime> =
        hours.iter().map(|hour| hour.hour).collect();
    provisional.retain(|hour| !rolled.contains(&hour.hour));
    Ok(plan.price(month, &hours, &provisional))
}

/// A tenant's month from the hours rolled up alone: what a closed report bills.
async fn rolled_up_usage(
    store: &Store,
    plan: &PricePlan,
    tenant: &Tenant,
    month: BillingMonth,
) -> Result<MonthUsage> {
    let hours = metering::hourly(store, tenant, month.start(), month.end()).await?;
    Ok(plan.price(month, &hours, &[]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// The month is open (or not yet closed); the figures can still grow.
    Draft,
    /// Closed by the metering run after the month ended; never changes again.
    Closed,
}

/// A tenant's bill for a month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub tenant_id: TenantId,
    /// `YYYY-MM`.
    #[schema(example = "2026-11")]
    pub month: String,
    pub status: ReportStatus,
    pub points: u64,
    #[schema(value_type = String, format = "decimal", example = "7300")]
    pub gb_hours: Decimal,
    /// The storage exactly: bytes times the seconds they were stored. Absent from
    /// reports closed before storage was integrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_seconds: Option<u64>,
    pub line_items: Vec<LineItem>,
    #[schema(value_type = String, format = "decimal", example = "2.00")]
    pub total: Decimal,
    /// The ISO 4217 code of the amounts.
    #[schema(example = "USD")]
    pub currency: String,
    /// When the month closed; null for a draft.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(required = true)]
    pub closed_at: Option<OffsetDateTime>,
    /// In a draft, what of its figures is provisional (hours not rolled up yet); a
    /// closed report has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional: Option<Provisional>,
}

impl Report {
    fn from_usage(tenant: &Tenant, usage: MonthUsage) -> Self {
        Self {
            tenant_id: tenant.id(),
            month: usage.month,
            status: ReportStatus::Draft,
            points: usage.points,
            gb_hours: usage.gb_hours,
            byte_seconds: Some(usage.byte_seconds),
            line_items: usage.line_items,
            total: usage.total,
            currency: usage.currency,
            closed_at: None,
            provisional: usage.provisional,
        }
    }

    /// The line items as CSV, with a total row.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(
            "month,status,description,quantity,unit,unit_price,free_allowance,amount,currency\n",
        );
        let status = match self.status {
            ReportStatus::Draft => "draft",
            ReportStatus::Closed => "closed",
        };
        for item in &self.line_items {
            csv.push_str(&format!(
                "{},{status},{},{},{},{},{},{},{}\n",
                self.month,
                item.description,
                item.quantity,
                item.unit,
                item.unit_price,
                item.free_allowance,
                item.amount,
                self.currency
            ));
        }
        csv.push_str(&format!(
            "{},{status},total,,,,,{},{}\n",
            self.month, self.total, self.currency
        ));
        csv
    }
}

/// The index of a closed report: it exists only once the report is stored.
#[derive(Debug, Serialize, Deserialize)]
struct Closed {
    #[serde(with = "time::serde::rfc3339")]
    closed_at: OffsetDateTime,
}

fn closed_key(tenant: &Tenant, month: BillingMonth) -> Key {
    Key::new(crate::usage::partition(tenant), format!("report#{month}"))
}

fn report_blob(tenant: &Tenant, month: BillingMonth) -> Result<BlobKey> {
    Ok(BlobKey::parse(format!(
        "{}billing/{month}.json",
        tenant.blob_prefix()
    ))?)
}

/// The month's report: the closed one if the month is closed, else a draft.
pub async fn report(
    store: &Store,
    plan: &PricePlan,
    tenant: &Tenant,
    month: BillingMonth,
) -> Result<Report> {
    if get_doc::<Closed>(&*store.kv, &closed_key(tenant, month))
        .await?
        .is_some()
    {
        let bytes = store
            .blobs
            .get(&report_blob(tenant, month)?)
            .await?
            .bytes()
            .await?;
        return serde_json::from_slice(&bytes).map_err(BillingError::Report);
    }
    Ok(Report::from_usage(
        tenant,
        usage(store, plan, tenant, month).await?,
    ))
}

/// The months whose report is closed for the tenant, newest first.
pub async fn closed_months(store: &Store, tenant: &Tenant) -> Result<Vec<BillingMonth>> {
    let mut query = Query::partition(crate::usage::partition(tenant)).prefix("report#");
    let mut months = Vec::new();
    loop {
        let page = store.kv.query(query.clone()).await?;
        months.extend(page.items.iter().filter_map(|item| {
            let month = item.key.sk.strip_prefix("report#")?;
            BillingMonth::parse(month).ok()
        }));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    months.sort_by_key(|month| std::cmp::Reverse((month.year, u8::from(month.month))));
    Ok(months)
}

/// One tenant's month, as the operator's listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantTotals {
    pub tenant_id: TenantId,
    /// The team's name; null once the team is gone (its bill stays).
    #[schema(required = true)]
    pub team: Option<String>,
    pub status: ReportStatus,
    pub points: u64,
    #[schema(value_type = String, format = "decimal", example = "7300")]
    pub gb_hours: Decimal,
    #[schema(value_type = String, format = "decimal", example = "2.00")]
    pub total: Decimal,
    /// The ISO 4217 code of the total.
    #[schema(example = "USD")]
    pub currency: String,
}

/// Every tenant billed in the month (with an hour rolled up in it), by tenant id.
pub async fn tenant_totals(
    store: &Store,
    plan: &PricePlan,
    month: BillingMonth,
) -> Result<Vec<TenantTotals>> {
    let mut totals = Vec::new();
    for tenant_id in metering::billed_tenants(store, month).await? {
        let tenant = Tenant::verified(tenant_id);
        let report = report(store, plan, &tenant, month).await?;
        totals.push(TenantTotals {
            tenant_id,
            team: crate::accounts::team_name(store, &tenant).await?,
            status: report.status,
            points: report.points,
            gb_hours: report.gb_hours,
            total: report.total,
            currency: report.currency,
        });
    }
    Ok(totals)
}

/// Closes a month for every tenant billed in it: stores each report and then its
/// index, once. Closing again changes nothing; the time a month closes is its end, so
/// a report's bytes do not depend on when the run happened.
pub async fn close_month(store: &Store, plan: &PricePlan, month: BillingMonth) -> Result<usize> {
    let closed: Vec<bool> = futures::stream::iter(metering::billed_tenants(store, month).await?)
        .map(|tenant| close_report(store, plan, Tenant::verified(tenant), month))
        .buffer_unordered(metering::TENANTS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(closed.into_iter().filter(|&closed| closed).count())
}

/// Stores and indexes one tenant's closed report unless it is closed already;
/// answers whether this call closed it.
async fn close_report(
    store: &Store,
    plan: &PricePlan,
    tenant: Tenant,
    month: BillingMonth,
) -> Result<bool> {
    let key = closed_key(&tenant, month);
    if store.kv.get(&key).await?.is_some() {
        return Ok(false);
    }
    let mut report =
        Report::from_usage(&tenant, rolled_up_usage(store, plan, &tenant, month).await?);
    report.status = ReportStatus::Closed;
    report.closed_at = Some(month.end());
    let json = serde_json::to_vec_pretty(&report).map_err(BillingError::Report)?;
    store
        .blobs
        .put(&report_blob(&tenant, month)?, json.into())
        .await?;
    let index = Closed {
        closed_at: month.end(),
    };
    match store
        .kv
        .put(doc_item(key, &index)?, Condition::NotExists)
        .await
    {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn months_parse_strictly_and_know_their_bounds() {
        let month = BillingMonth::parse("2026-12").unwrap();
        assert_eq!(month.start(), datetime!(2026-12-01 0:00 UTC));
        assert_eq!(month.end(), datetime!(2027-01-01 0:00 UTC));
        assert_eq!(month.to_string(), "2026-12");
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", ""] {
            assert!(BillingMonth::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_plan_is_configured_by_variables_and_defaults_to_the_published_one() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(
            PricePlan::from_vars(vars(&[])).unwrap(),
            PricePlan::default()
        );
        let plan = PricePlan::from_vars(vars(&[
            ("CURRENCY", "EUR"),
            ("PRICE_PER_MILLION_POINTS", "0.45"),
            ("FREE_POINTS", "0"),
            ("MONTHLY_POINTS_CAP", "50000000"),
        ]))
        .unwrap();
        assert_eq!(plan.currency, "EUR");
        assert_eq!(plan.per_million_points, Decimal::new(45, 2));
        assert_eq!(plan.free_points, 0);
        assert_eq!(plan.monthly_points_cap, Some(50_000_000));
        assert_eq!(plan.per_gb_month, PricePlan::default().per_gb_month);
        for bad in [
            &[("CURRENCY", "dollars")][..],
            &[("PRICE_PER_GB_MONTH", "-1")],
            &[("FREE_POINTS", "lots")],
            &[("MONTHLY_POINTS_CAP", "-5")],
        ] {
            assert!(PricePlan::from_vars(vars(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn free_allowances_come_off_before_pricing_and_amounts_round_to_cents() {
        let plan = PricePlan::default();
        let hour = |h: u8, points: u64, bytes: u64| HourlyUsage {
            hour: datetime!(2026-11-01 0:00 UTC) + time::Duration::hours(h.into()),
            points,
            storage_bytes: bytes,
            byte_seconds: None,
        };
        // 13,000,001 points, and 100 GB for 73 hours: 10 GB-months, 5 of them free.
        let mut hours = vec![hour(0, 13_000_001, 0)];
        hours.extend((1..=73).map(|h| hour(h, 0, 100 * BYTES_PER_GB)));
        let usage = plan.price(BillingMonth::parse("2026-11").unwrap(), &hours, &[]);
        assert_eq!(usage.points, 13_000_001);
        assert_eq!(usage.gb_hours, Decimal::from(7300));
        // 3,000,001 billed points at $0.50 per million: $1.5000005 -> $1.50.
        assert_eq!(usage.line_items[0].amount, Decimal::new(150, 2));
        // 3,650 billed GB-hours at $0.10 / 730: $0.50.
        assert_eq!(usage.line_items[1].amount, Decimal::new(50, 2));
        assert_eq!(usage.total, Decimal::new(200, 2));
        assert_eq!(usage.days.len(), 4);
        assert_eq!(usage.days[0].points, 13_000_001);
    }
}
