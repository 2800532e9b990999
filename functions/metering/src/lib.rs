//! The metering function, run hourly by an EventBridge schedule. It takes the hour it
//! accounts for from its event, never from the clock, so a late or repeated invocation
//! accounts for the right hour and tests can drive simulated days.
//!
//! Each run first finishes any team deletion that stopped halfway
//! (`sextant_domain::deletion::delete_team`). Then it rolls up the hour its event names
//! and every hour missed before it (`sextant_domain::metering`; closing a month stops
//! billing the teams deleted in it), then settles the sweep's notes that have fallen
//! due (`sextant_domain::sweep`), so that every byte stored is billed or gone and every
//! run that logged is folded (`sextant_domain::series::fold`); running an hour twice
//! changes nothing. Then it evaluates every team's budget (`sextant_domain::budgets`): letters
//! at 50, 80 and 100 % of it, and the hard stop. Until it has seen every team once, it
//! also notes runs logged before folds existed. Last, it POSTs the closed monthly
//! reports due to the operator's webhook (`sextant_domain::report_delivery`), through
//! `HttpReportSender`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sextant_domain::billing::{self, PricePlan};
use sextant_domain::budgets;
use sextant_domain::calendar::BillingMonth;
use sextant_domain::error::Result;
use sextant_domain::postman::Postman;
use sextant_domain::report_delivery::{
    self, DeliveryRun, Outgoing, ReportSender, ReportWebhook, RetryPolicy, SendFailure,
    WebhookSecret,
};
use sextant_domain::sweep::{self, Claimant};
use sextant_domain::{artifacts, deletion, images, metering, series};
use sextant_storage::{Storage, Store};
use time::OffsetDateTime;

/// What one run did.
#[derive(Debug, Default, Serialize)]
pub struct RunReport {
    /// Team deletions that had stopped halfway, finished.
    pub teams_deleted: usize,
    /// Hours rolled up.
    pub hours: usize,
    /// Sweep notes settled, and the bytes their settling deleted.
    pub notes: usize,
    pub bytes_deleted: u64,
    /// Runs logged before folds existed, noted for the next hour's sweep to fold.
    pub runs_noted: usize,
    /// Teams whose budget was evaluated, and the budget letters sent.
    pub budgets: budgets::Evaluated,
    /// Closed reports the webhook acknowledged, and those it did not yet.
    pub deliveries: DeliveryRun,
}

/// Tenants whose older runs one metering run notes for folding: a deployment's
/// backlog is through in a day for every 2,400 storing tenants, and each run stays
/// well inside the function's five minutes.
const MIGRATION_TENANTS_A_RUN: usize = 100;

/// What a metering run works with: the store, the price plan that month-end reports
/// close at and budgets are priced at, how many bytes of an artifact one settling
/// checks, the mail budget letters go by, and where closed reports are delivered
/// (none: they wait, pending, until a webhook is configured).
#[derive(Debug, Clone)]
pub struct Metering {
    pub store: Store,
    pub plan: PricePlan,
    pub verify_slice_bytes: u64,
    /// Delivers budget letters; without it they wait (unsent) for a run that has one.
    pub postman: Option<Arc<Postman>>,
    /// Where clients reach the service, for the usage page's link in budget letters.
    pub public_url: Option<url::Url>,
    pub webhook: Option<ReportWebhook>,
}

impl Metering {
    /// The Lambda configuration over `storage`: the price plan from `SEXTANT_PLAN_*`,
    /// the public URL from `SEXTANT_PUBLIC_URL`, budget letters through `mailer`
    /// (none when the deployment has no mail service), and the webhook from
    /// `SEXTANT_REPORT_WEBHOOK_URL` and `_SECRET`.
    pub fn from_env(
        storage: Storage,
        mailer: Option<Arc<dyn sextant_storage::Mailer>>,
    ) -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok();
        let public_url = var("SEXTANT_PUBLIC_URL")
            .map(|url| {
                url.parse()
                    .map_err(|_| anyhow::anyhow!("SEXTANT_PUBLIC_URL is not a URL: {url:?}"))
            })
            .transpose()?;
        Ok(Self {
            store: Store::new(storage),
            plan: PricePlan::from_env()?,
            verify_slice_bytes: artifacts::VERIFY_SLICE_BYTES,
            postman: mailer.map(|mailer| Arc::new(Postman::new(mailer))),
            public_url,
            webhook: report_webhook(
                var("SEXTANT_REPORT_WEBHOOK_URL").as_deref(),
                var("SEXTANT_REPORT_WEBHOOK_SECRET").as_deref(),
            )?,
        })
    }

    /// The metering run for the hour that ended at `hour.end()`: the roll-up, the
    /// sweep of every note due by then, the budgets, and the deliveries of closed
    /// reports due now.
    pub async fn run(&self, hour: MeteringHour) -> Result<RunReport> {
        let teams_deleted = deletion::finish_team_deletions(&self.store).await?;
        let hours = self.roll_up_through(hour.start).await?;
        let mut report = self.sweep_due(hour.end()).await?;
        report.teams_deleted = teams_deleted;
        report.hours = hours.len();
        report.runs_noted =
            series::fold::note_unfolded_runs(&self.store, MIGRATION_TENANTS_A_RUN).await?;
        report.budgets = self.evaluate_budgets(hour).await?;
        report.deliveries = self.deliver_reports().await?;
        Ok(report)
    }

    /// Evaluates every team's budget after the roll-up of `hour`: for its month and,
    /// when the hour is a month's last, for the month starting, so the new month's
    /// hard stop is in place from its first run.
    pub async fn evaluate_budgets(&self, hour: MeteringHour) -> Result<budgets::Evaluated> {
        let usage_page = self.public_url.as_ref().map(budgets::usage_page);
        let mail = self.postman.as_deref().map(|postman| budgets::Mail {
            postman,
            usage_page: usage_page.as_ref(),
        });
        let mut months = vec![BillingMonth::of(hour.start)];
        if BillingMonth::of(hour.end()) != months[0] {
            months.push(BillingMonth::of(hour.end()));
        }
        Ok(budgets::evaluate_marked(&self.store, &self.plan, mail, &months).await?)
    }

    /// POSTs every closed report whose delivery is due to the webhook, if there is one.
    pub async fn deliver_reports(&self) -> Result<DeliveryRun> {
        match &self.webhook {
            Some(webhook) => {
                Ok(report_delivery::deliver_due(&self.store, &self.plan, webhook).await?)
            }
            None => Ok(DeliveryRun::default()),
        }
    }

    /// Rolls up `through` and every hour missed before it, closing the reports of each
    /// month whose last hour it rolls up: the roll-up of every metering run (this
    /// function's, `sextant serve`'s and `sextant meter`'s).
    pub async fn roll_up_through(&self, through: OffsetDateTime) -> Result<Vec<OffsetDateTime>> {
        metering::roll_up_through(&self.store, through, &|month| self.close_reports(month)).await
    }

    /// Rolls up one hour again (or for the first time), closing its month's reports if
    /// it is the month's last.
    pub async fn roll_up_hour(&self, hour: OffsetDateTime) -> Result<usize> {
        metering::roll_up_hour(&self.store, hour, &|month| self.close_reports(month)).await
    }

    /// The month-end step the roll-up calls: billing closes the month's reports, and
    /// each is scheduled for delivery. Until both are done the roll-up's cursor stays
    /// before the month's last hour, so a run that fails between them is finished by
    /// the next.
    async fn close_reports(&self, month: BillingMonth) -> Result<()> {
        billing::close_month(&self.store, &self.plan, month).await?;
        report_delivery::schedule(&self.store, month).await?;
        // Teams deleted in the month have their final report now: billing them stops.
        metering::forget_closed(&self.store, month).await?;
        Ok(())
    }

    /// Settles every sweep note due at `now`, hour by hour, forgetting each once
    /// settled and moving the cursor past each hour once all of its notes are; a note to
    /// be looked at again (a checksum still being computed) is noted anew for the next
    /// hour.
    pub async fn sweep_due(&self, now: OffsetDateTime) -> Result<RunReport> {
        let store = &self.store;
        let kv = &*store.kv;
        let mut report = RunReport::default();
        // Settling a run's hot batches counts its points: the hour's usage marks,
        // written once per run of this function.
        let marks = metering::Marks::default();
        for hour in sweep::due_hours(kv, now).await? {
            for (key, note) in sweep::notes(kv, hour).await? {
                let (deleted, again) = match &note.claimant {
                    Claimant::Artifact { run, path } => {
                        artifacts::settle(store, self.verify_slice_bytes, &note, *run, path).await?
                    }
                    Claimant::Image { run, index } => {
                        (images::settle(store, &note, *run, index).await?, false)
                    }
                    Claimant::Series { run } => {
                        (0, series::fold::settle(store, &marks, &note, *run).await?)
                    }
                };
                if again {
                    sweep::expect(kv, &note, now).await?;
                }
                sweep::forget(kv, &key).await?;
                report.notes += 1;
                report.bytes_deleted += deleted;
            }
            sweep::settled_through(kv, hour).await?;
        }
        Ok(report)
    }
}

/// How long one POST to the webhook may take, answer included.
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The webhook configured by a URL and a secret: none when the URL is absent or empty;
/// an error when it is not an http(s) URL or the secret is missing or short.
pub fn report_webhook(
    url: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<Option<ReportWebhook>> {
    let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let secret = secret.unwrap_or_default();
    Ok(Some(ReportWebhook {
        sender: Arc::new(HttpReportSender::new(url, WEBHOOK_TIMEOUT)?),
        secret: WebhookSecret::new(secret)?,
        retry: RetryPolicy::default(),
    }))
}

/// The report webhook's port over HTTP(S): one POST per try, no redirects followed (a
/// signed report goes where it was configured to, or fails).
pub struct HttpReportSender {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl std::fmt::Debug for HttpReportSender {
    /// The origin alone: a URL's path or query may carry a token of the receiver's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReportSender")
            .field("origin", &self.url.origin().ascii_serialization())
            .finish_non_exhaustive()
    }
}

impl HttpReportSender {
    pub fn new(url: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let url: reqwest::Url = url
            .parse()
            .map_err(|_| anyhow::anyhow!("the report webhook's URL is not a URL"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "the report webhook's URL is http:// or https://"
        );
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client, url })
    }
}

#[async_trait::async_trait]
impl ReportSender for HttpReportSender {
    async fn post(&self, outgoing: &Outgoing) -> std::result::Result<u16, SendFailure> {
        let answer = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                report_delivery::IDEMPOTENCY_KEY_HEADER,
                &outgoing.idempotency_key,
            )
            .header(report_delivery::SIGNATURE_HEADER, &outgoing.signature)
            .body(outgoing.body.clone())
            .send()
            .await
            .map_err(|err| {
                if err.is_timeout() {
                    SendFailure::Timeout
                } else if err.is_connect() {
                    SendFailure::Connect
                } else {
                    SendFailure::Request
                }
            })?;
        Ok(answer.status().as_u16())
    }
}

/// An EventBridge scheduled event; only its `time` matters here.
#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// The whole UTC hour an invocation accounts for: the hour that ended at or before
/// the event's time (a 13:00:07 event accounts for 12:00–13:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MeteringHour {
    pub start: OffsetDateTime,
}

impl MeteringHour {
    pub fn ending_at_or_before(time: OffsetDateTime) -> Self {
        let time = time.to_offset(time::UtcOffset::UTC);
        let top = time
            .replace_minute(0)
            .and_then(|t| t.replace_second(0))
            .and_then(|t| t.replace_nanosecond(0))
            .unwrap_or_else(|_| unreachable!("0 is a valid minute, second and nanosecond"));
        Self {
            start: top - time::Duration::HOUR,
        }
    }

    pub fn end(&self) -> OffsetDateTime {
        self.start + time::Duration::HOUR
    }
}

impl From<&ScheduledEvent> for MeteringHour {
    fn from(event: &ScheduledEvent) -> Self {
        Self::ending_at_or_before(event.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_event_just_after_the_hour_accounts_for_the_hour_before() {
        let event: ScheduledEvent = serde_json::from_str(
            r#"{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events",
                "time":"2026-11-05T13:00:07Z","region":"us-east-1","resources":[],"detail":{}}"#,
        )
        .unwrap();
        let hour = MeteringHour::from(&event);
        assert_eq!(hour.start, datetime!(2026-11-05 12:00 UTC));
        assert_eq!(hour.end(), datetime!(2026-11-05 13:00 UTC));
    }

    #[test]
    fn an_event_exactly_on_the_hour_accounts_for_the_hour_that_just_ended() {
        let hour = MeteringHour::ending_at_or_before(datetime!(2026-11-05 00:00 UTC));
        assert_eq!(hour.start, datetime!(2026-11-04 23:00 UTC));
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_secret_and_its_debug_output_hides_both() {
        assert!(report_webhook(None, None).unwrap().is_none());
        assert!(report_webhook(Some(" "), None).unwrap().is_none());
        let secret = "whsec_0123456789abcdef";
        let webhook = report_webhook(
            Some("https://hooks.example.com/in/t0ken?key=k3y"),
            Some(secret),
        )
        .unwrap()
        .expect("a webhook");
        let shown = format!("{webhook:?}");
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
        for hidden in [secret, "t0ken", "k3y"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        for (url, secret) in [
            ("ftp://hooks.example.com/in", Some(secret)),
            ("not a url", Some(secret)),
            ("https://hooks.example.com/in", None),
            ("https://hooks.example.com/in", Some("short")),
        ] {
            assert!(
                report_webhook(Some(url), secret).is_err(),
                "{url} {secret:?}"
            );
        }
    }
}
