//! Closed monthly reports delivered to the operator's invoicing system by webhook: one
//! signed POST per tenant and month, tried again with back-off until the receiver
//! answers 2xx, and recorded as delivered once.
//!
//! When the metering run closes a month (`billing::close_month`), `schedule` writes a
//! pending delivery for every tenant billed in it, whether or not a webhook is
//! configured, so that turning the webhook on later delivers every report closed
//! meanwhile. A run that dies between closing and scheduling leaves the metering
//! cursor before the month's last hour, so the next run closes (a no-op) and schedules
//! again; scheduling an existing delivery changes nothing.
//!
//! Records: `metering#deliveries#{YYYY-MM}` / `{tenant}` holds a `Delivery` (versioned,
//! so every change is conditional on the one read), and `metering#deliveries#due` /
//! `{YYYY-MM}#{tenant}` names each delivery not yet acknowledged, so a run finds the due
//! ones without reading every month. Each run (`deliver_due`) first claims a due
//! delivery by moving its next attempt past the claim's end, so two runs at once never
//! both send it; it then POSTs, a few quick tries at most, and records the outcome
//! under the claim's version. A 2xx marks it delivered (never sent again) and drops its
//! due entry; anything else pushes its next attempt back, doubling each failed run.
//!
//! The POST's body is an envelope, `{"id": KEY, "type": "report.closed", "report":
//! REPORT}`, where `REPORT` is the closed report as `GET /v1/billing/reports/{month}`
//! answers it; its headers are `Idempotency-Key: KEY`, the same on every try for the
//! tenant and month, and `Sextant-Signature: t=UNIX_SECONDS,v1=HEX`, the HMAC-SHA256 of
//! `"{t}.{body}"` under the shared secret (as Stripe signs its events). A report can
//! reach the receiver twice (acknowledged, then the run died before recording it), so
//! the receiver must keep the keys it has acknowledged and answer 2xx to a repeat
//! without booking it again.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::billing::{self, BillingError, PricePlan, Report, ReportStatus, TenantTotals};
use crate::calendar::BillingMonth;
use crate::ids::TenantId;
use crate::metering;
use crate::tenancy::Tenant;
use sextant_storage::Store;
use sextant_storage::kv::{Condition, Item, Key, Query, StoreError};
use sextant_storage::records::{Versioned, get_doc};

type Result<T, E = BillingError> = std::result::Result<T, E>;

/// The header carrying the delivery's stable key: the receiver's deduplication key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// The header carrying `t=UNIX_SECONDS,v1=HEX_HMAC_SHA256`.
pub const SIGNATURE_HEADER: &str = "Sextant-Signature";
/// The envelope's `type`.
pub const EVENT_TYPE: &str = "report.closed";

/// Deliveries one run sends at once: a slow receiver must not make a run with
/// hundreds of tenants take one request's timeout per tenant.
const DELIVERIES_AT_ONCE: usize = 8;

const DUE: &str = "metering#deliveries#due";

fn partition(month: BillingMonth) -> String {
    format!("metering#deliveries#{month}")
}

fn record_key(month: BillingMonth, tenant: TenantId) -> Key {
    Key::new(partition(month), tenant.to_string())
}

fn due_key(month: BillingMonth, tenant: TenantId) -> Key {
    Key::new(DUE, format!("{month}#{tenant}"))
}

/// The delivery's key, the same on every try: `report-{tenant}-{YYYY-MM}`.
pub fn idempotency_key(tenant: TenantId, month: BillingMonth) -> String {
    format!("report-{tenant}-{month}")
}

/// The secret the webhook's signatures are made with. Its `Debug` shows nothing of
/// it, so a logged configuration never leaks it.
#[derive(Clone)]
pub struct WebhookSecret(Arc<str>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl WebhookSecret {
    /// Fewer bytes than this is a typo or a placeholder, not a secret.
    pub const MIN_BYTES: usize = 16;

    pub fn new(secret: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= Self::MIN_BYTES,
            "the report webhook's secret has at least {} bytes",
            Self::MIN_BYTES
        );
        Ok(Self(secret.into()))
    }

    /// The `Sextant-Signature` header's value for `body` sent at `timestamp` (Unix
    /// seconds): `t={timestamp},v1={hex HMAC-SHA256 of "{timestamp}.{body}"}`.
    pub fn signature(&self, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "t={timestamp},v1={}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

/// One POST, ready to send: the body and the values of its two headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub idempotency_key: String,
    pub signature: String,
    /// `application/json`.
    pub body: Vec<u8>,
}

/// Why a POST got no answer. Each is a stable code in a delivery's `last_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    #[error("timeout")]
    Timeout,
    #[error("connect")]
    Connect,
    /// Anything else the client met (a broken connection, an unreadable answer).
    #[error("request")]
    Request,
}

/// The port the POST goes through: an HTTP client in the metering function
/// (`sextant_metering::HttpReportSender`); the domain holds none.
#[async_trait]
pub trait ReportSender: Send + Sync + std::fmt::Debug {
    /// POSTs `outgoing` to the webhook; answers the status the receiver answered.
    async fn post(&self, outgoing: &Outgoing) -> Result<u16, SendFailure>;
}

/// How deliveries are tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The waits between one run's quick tries (a receiver restarting, a dropped
    /// connection): a run makes one try more than there are waits.
    pub quick_waits: Vec<std::time::Duration>,
    /// After a run's tries all fail, the next run tries no sooner than this...
    pub first_backoff: time::Duration,
    /// ...doubled for each run that failed before, up to this.
    pub max_backoff: time::Duration,
    /// How long a run's claim keeps other runs from sending a delivery: longer than
    /// its tries can take (timeouts and waits), shorter than the back-off's cap.
    pub claim: time::Duration,
    /// How long a run goes on starting deliveries: those not started by then wait for
    /// the next run, so a backlog to a receiver that times out cannot hold the
    /// metering function past its own timeout.
    pub run_budget: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            quick_waits: vec![
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(5),
            ],
            first_backoff: time::Duration::MINUTE,
            max_backoff: time::Duration::hours(6),
            claim: time::Duration::minutes(10),
            run_budget: std::time::Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next run tries, after `failed_rounds` runs failed (≥ 1).
    pub fn backoff(&self, failed_rounds: u32) -> time::Duration {
        let doublings = failed_rounds.saturating_sub(1).min(30);
        self.first_backoff
            .checked_mul(1_i32 << doublings)
            .map_or(self.max_backoff, |wait| wait.min(self.max_backoff))
    }
}

/// Where closed reports go: the sender that POSTs, the secret that signs.
#[derive(Debug, Clone)]
pub struct ReportWebhook {
    pub sender: Arc<dyn ReportSender>,
    pub secret: WebhookSecret,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not acknowledged yet (or no webhook is configured to send it to).
    Pending,
    /// The receiver answered 2xx; it is never sent again.
    Delivered,
}

/// A closed report's delivery, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Delivery {
    state: DeliveryState,
    /// POSTs sent.
    attempts: u32,
    /// Runs whose every try failed: the back-off doubles with each.
    failed_rounds: u32,
    /// The last failure's code: `http_{status}`, `timeout`, `connect`, `request` or
    /// `report_not_closed`; never a body or a secret.
    last_error: Option<String>,
    /// No run sends it before then; `None` is due now.
    #[serde(with = "time::serde::rfc3339::option", default)]
    next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    delivered_at: Option<OffsetDateTime>,
}

impl Delivery {
    fn pending() -> Self {
        Self {
            state: DeliveryState::Pending,
            attempts: 0,
            failed_rounds: 0,
            last_error: None,
            next_attempt_at: None,
            delivered_at: None,
        }
    }
}

/// Schedules the delivery of every report of `month`, which `billing::close_month` has
/// just closed; answers how many it scheduled anew.
pub async fn schedule(store: &Store, month: BillingMonth) -> Result<usize> {
    let scheduled: Vec<bool> = futures::stream::iter(metering::billed_tenants(store, month).await?)
        .map(|tenant| schedule_one(store, month, tenant))
        .buffer_unordered(metering::TENANTS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(scheduled.into_iter().filter(|&new| new).count())
}

/// The record first, then its due entry: a due entry always has a record to read.
async fn schedule_one(store: &Store, month: BillingMonth, tenant: TenantId) -> Result<bool> {
    let key = record_key(month, tenant);
    let fresh = Versioned::unsaved(Delivery::pending());
    let created = match store
        .kv
        .put(fresh.next_item(key.clone())?, fresh.unchanged())
        .await
    {
        Ok(()) => true,
        Err(StoreError::ConditionFailed) => false,
        Err(err) => return Err(err.into()),
    };
    if !created {
        let delivered = get_doc::<Delivery>(&*store.kv, &key)
            .await?
            .is_some_and(|delivery| delivery.state == DeliveryState::Delivered);
        if delivered {
            return Ok(false);
        }
    }
    store
        .kv
        .put(Item::new(due_key(month, tenant)), Condition::None)
        .await?;
    Ok(created)
}

/// What one run's deliveries did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeliveryRun {
    /// Reports the receiver acknowledged in this run.
    pub delivered: usize,
    /// Reports tried in this run and still pending.
    pub failed: usize,
}

enum Outcome {
    /// Not due yet, claimed by another run, delivered already, or left for the next
    /// run once this one's budget is spent.
    Skipped,
    Delivered,
    Failed,
}

/// Sends every delivery due now; answers what was delivered and what failed.
pub async fn deliver_due(
    store: &Store,
    plan: &PricePlan,
    webhook: &ReportWebhook,
) -> Result<DeliveryRun> {
    let mut due = Vec::new();
    let mut query = Query::partition(DUE);
    loop {
        let page = store.kv.query(query.clone()).await?;
        due.extend(page.items.iter().filter_map(|item| {
            let (month, tenant) = item.key.sk.split_once('#')?;
            Some((BillingMonth::parse(month).ok()?, tenant.parse().ok()?))
        }));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let started = std::time::Instant::now();
    let outcomes: Vec<Outcome> = futures::stream::iter(due)
        .map(|(month, tenant)| async move {
            if started.elapsed() > webhook.retry.run_budget {
                return Ok(Outcome::Skipped);
            }
            deliver_one(store, plan, webhook, month, tenant).await
        })
        .buffer_unordered(DELIVERIES_AT_ONCE)
        .try_collect()
        .await?;
    let mut run = DeliveryRun::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Delivered => run.delivered += 1,
            Outcome::Failed => run.failed += 1,
            Outcome::Skipped => {}
        }
    }
    Ok(run)
}

async fn deliver_one(
    store: &Store,
    plan: &PricePlan,
    webhook: &ReportWebhook,
    month: BillingMonth,
    tenant: TenantId,
) -> Result<Outcome> {
    let key = record_key(month, tenant);
    let due = due_key(month, tenant);
    let Some(item) = store.kv.get(&key).await? else {
        // Scheduling writes the record before its due entry: an entry without one is
        // left from a record that is gone, with nothing to send.
        store.kv.delete(&due, Condition::None).await?;
        return Ok(Outcome::Skipped);
    };
    let mut delivery = Versioned::<Delivery>::read(&item)?;
    if delivery.record.state == DeliveryState::Delivered {
        // Acknowledged by a run that stopped before dropping the entry.
        store.kv.delete(&due, Condition::None).await?;
        return Ok(Outcome::Skipped);
    }
    let now = store.now();
    if delivery.record.next_attempt_at.is_some_and(|at| at > now) {
        return Ok(Outcome::Skipped);
    }
    // The claim: other runs see it as not due until the claim ends.
    delivery.record.next_attempt_at = Some(now + webhook.retry.claim);
    match store
        .kv
        .put(delivery.next_item(key.clone())?, delivery.unchanged())
        .await
    {
        Ok(()) => delivery.saved(),
        Err(err) if err.is_conflict() => return Ok(Outcome::Skipped),
        Err(err) => return Err(err.into()),
    }

    let report = billing::report(store, plan, &Tenant::verified(tenant), month).await?;
    let acknowledged = if report.status == ReportStatus::Closed {
        let id = idempotency_key(tenant, month);
        send(store, webhook, &id, &report, &mut delivery.record).await?
    } else {
        // Scheduled only once its month closed, so a draft here is a store at odds
        // with itself: nothing is sent, the listing says so, and later runs look again.
        delivery.record.last_error = Some("report_not_closed".to_owned());
        false
    };

    let now = store.now();
    if acknowledged {
        delivery.record.state = DeliveryState::Delivered;
        delivery.record.delivered_at = Some(now);
        delivery.record.next_attempt_at = None;
    } else {
        delivery.record.failed_rounds += 1;
        delivery.record.next_attempt_at =
            Some(now + webhook.retry.backoff(delivery.record.failed_rounds));
    }
    match store
        .kv
        .put(delivery.next_item(key)?, delivery.unchanged())
        .await
    {
        Ok(()) => {}
        // Only a run whose claim ran out loses here; the one that took over records.
        Err(err) if err.is_conflict() => return Ok(Outcome::Skipped),
        Err(err) => return Err(err.into()),
    }
    if acknowledged {
        store.kv.delete(&due, Condition::None).await?;
        tracing::info!(%tenant, %month, attempts = delivery.record.attempts, "report delivered");
        Ok(Outcome::Delivered)
    } else {
        tracing::warn!(
            %tenant,
            %month,
            attempts = delivery.record.attempts,
            error = delivery.record.last_error.as_deref().unwrap_or_default(),
            "report not delivered; a later run tries again"
        );
        Ok(Outcome::Failed)
    }
}

/// The envelope a report is POSTed in.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    report: &'a Report,
}

/// The run's quick tries; answers whether the receiver acknowledged one, counting each
/// try and noting each failure in `delivery`.
async fn send(
    store: &Store,
    webhook: &ReportWebhook,
    id: &str,
    report: &Report,
    delivery: &mut Delivery,
) -> Result<bool> {
    let body = serde_json::to_vec(&Envelope {
        id,
        kind: EVENT_TYPE,
        report,
    })
    .map_err(BillingError::Report)?;
    let mut waits = webhook.retry.quick_waits.iter();
    loop {
        let outgoing = Outgoing {
            idempotency_key: id.to_owned(),
            signature: webhook
                .secret
                .signature(store.now().unix_timestamp(), &body),
            body: body.clone(),
        };
        delivery.attempts += 1;
        let failure = match webhook.sender.post(&outgoing).await {
            Ok(status) if (200..300).contains(&status) => return Ok(true),
            Ok(status) => format!("http_{status}"),
            Err(failure) => failure.to_string(),
        };
        delivery.last_error = Some(failure);
        match waits.next() {
            Some(wait) => tokio::time::sleep(*wait).await,
            None => return Ok(false),
        }
    }
}

/// One tenant's report for a month and its delivery, as the operator's listing
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportDelivery {
    #[serde(flatten)]
    pub totals: TenantTotals,
    /// Null when no delivery is due: the month is not closed, or it closed before
    /// deliveries existed.
    #[schema(required = true)]
    pub delivery: Option<DeliveryState>,
    /// POSTs sent so far.
    pub attempts: u32,
    /// The last failure's code (`http_{status}`, `timeout`, `connect`, `request`,
    /// `report_not_closed`); null if none failed.
    #[schema(required = true, example = "http_503")]
    pub last_error: Option<String>,
    /// No run sends it before then; null once delivered, or when due now.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(required = true)]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When the receiver acknowledged it; null until then.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(required = true)]
    pub delivered_at: Option<OffsetDateTime>,
}

/// Every tenant billed in the month, by tenant id, with its report's delivery.
pub async fn listing(
    store: &Store,
    plan: &PricePlan,
    month: BillingMonth,
) -> Result<Vec<ReportDelivery>> {
    let mut rows = Vec::new();
    for totals in billing::tenant_totals(store, plan, month).await? {
        let delivery =
            get_doc::<Delivery>(&*store.kv, &record_key(month, totals.tenant_id)).await?;
        rows.push(ReportDelivery {
            totals,
            delivery: delivery.as_ref().map(|d| d.state),
            attempts: delivery.as_ref().map_or(0, |d| d.attempts),
            last_error: delivery.as_ref().and_then(|d| d.last_error.clone()),
            next_attempt_at: delivery.as_ref().and_then(|d| d.next_attempt_at),
            delivered_at: delivery.as_ref().and_then(|d| d.delivered_at),
        });
    }
    Ok(rows)
}

/// A cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a tab or
/// carriage return first), made text with a leading apostrophe: team names are the
/// teams' to choose, and the listing is opened in spreadsheets.
fn spreadsheet_text(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// A listing's time in RFC 3339, empty for none.
pub fn rfc3339(at: Option<OffsetDateTime>) -> String {
    at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default()
}

/// The listing as CSV (RFC 4180 quoting), a header row and a row per tenant.
pub fn to_csv(rows: &[ReportDelivery]) -> Result<String, csv::Error> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "tenant_id",
        "team",
        "status",
        "total",
        "currency",
        "delivery",
        "attempts",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ])?;
    for row in rows {
        csv.write_record([
            row.totals.tenant_id.to_string(),
            spreadsheet_text(row.totals.team.as_deref().unwrap_or_default()),
            serde_name(row.totals.status),
            row.totals.total.to_string(),
            row.totals.currency.clone(),
            row.delivery.map(serde_name).unwrap_or_default(),
            row.attempts.to_string(),
            row.last_error.clone().unwrap_or_default(),
            rfc3339(row.next_attempt_at),
            rfc3339(row.delivered_at),
        ])?;
    }
    let bytes = csv.into_inner().map_err(|err| err.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A unit variant's name as the JSON spells it (`closed`, `delivered`).
pub fn serde_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        let secret = WebhookSecret::new("whsec_test_0123456789").unwrap();
        // Computed independently, with
        // printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac whsec_test_0123456789
        assert_eq!(
            secret.signature(1_700_000_000, br#"{"id":"x"}"#),
            "t=1700000000,v1=f082be31b5a9fa327fe76cfdc7d206473fbc44da88a7328f2e70551df2f5e72f"
        );
    }

    #[test]
    fn a_secret_never_shows_in_debug_output_and_a_short_one_is_refused() {
        let secret = WebhookSecret::new("whsec_test_0123456789").unwrap();
        assert!(!format!("{secret:?}").contains("0123456789"));
        assert!(WebhookSecret::new("short").is_err());
        assert!(WebhookSecret::new("").is_err());
    }

    #[test]
    fn the_backoff_doubles_from_a_minute_up_to_six_hours() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1), time::Duration::MINUTE);
        assert_eq!(policy.backoff(2), time::Duration::minutes(2));
        assert_eq!(policy.backoff(5), time::Duration::minutes(16));
        assert_eq!(
            policy.backoff(9),
            time::Duration::hours(4) + time::Duration::minutes(16)
        );
        assert_eq!(policy.backoff(10), time::Duration::hours(6));
        assert_eq!(policy.backoff(u32::MAX), time::Duration::hours(6));
    }

    #[test]
    fn the_idempotency_key_names_the_tenant_and_the_month() {
        let tenant = TenantId::generate();
        let month = BillingMonth::parse("2026-11").unwrap();
        assert_eq!(
            idempotency_key(tenant, month),
            format!("report-{tenant}-2026-11")
        );
        assert_eq!(
            idempotency_key(tenant, month),
            idempotency_key(tenant, month)
        );
    }

    #[test]
    fn the_csv_quotes_commas_and_quotes_and_keeps_formulas_as_text() {
        let row = |team: Option<&str>| ReportDelivery {
            totals: TenantTotals {
                tenant_id: TenantId::generate(),
                team: team.map(str::to_owned),
                status: ReportStatus::Closed,
                points: 1,
                gb_hours: rust_decimal::Decimal::ONE,
                total: rust_decimal::Decimal::new(150, 2),
                currency: "USD".into(),
            },
            delivery: Some(DeliveryState::Delivered),
            attempts: 3,
            last_error: Some("http_503".into()),
            next_attempt_at: None,
            delivered_at: Some(time::macros::datetime!(2026-12-01 0:02 UTC)),
        };
        let rows = [
            row(Some("Whales, \"Inc\"")),
            row(Some("=HYPERLINK(\"http://x\")")),
            row(None),
        ];
        let csv = to_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "tenant_id,team,status,total,currency,delivery,attempts,last_error,\
             next_attempt_at,delivered_at"
        );
        assert_eq!(
            lines[1],
            format!(
                "{},\"Whales, \"\"Inc\"\"\",closed,1.50,USD,delivered,3,http_503,,\
                 2026-12-01T00:02:00Z",
                rows[0].totals.tenant_id
            )
        );
        assert!(
            lines[2].contains(",\"'=HYPERLINK(\"\"http://x\"\")\",closed,"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains(",,closed,"), "{}", lines[3]);
    }
}
