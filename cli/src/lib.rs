//! The `sextant` command. `serve` runs every function's routes in one process over the
//! embedded store and a local blob directory: the same handler code Lambda runs.
//! `upload` and `download` move artifacts between this machine and a server;
//! `enqueue` puts jobs on a queue and `agent` runs them; `import mlflow` brings runs
//! over from MLflow. `meter`, `admin usage` and `admin reports` work on a data
//! directory's store directly.

pub mod agent;
pub mod blob_routes;
pub mod client;
pub mod enqueue;
pub mod import_mlflow;
pub mod secrets;
pub mod snapshot;
pub mod transfer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sextant_domain::artifacts;
use sextant_domain::billing::{self, PricePlan, TenantTotals};
use sextant_domain::calendar::{self, BillingMonth};
use sextant_domain::credentials::jwt::Keyring;
use sextant_domain::credentials::operator::OperatorTokenHash;
use sextant_domain::report_delivery::{self, ReportDelivery, ReportWebhook};
use sextant_edge::http;
use sextant_edge::state::{AppState, Settings};
use sextant_metering::Metering;
use sextant_storage::{Storage, Store};
use sextant_storage_aws::AwsStorageConfig;
use sextant_storage_local::EmbeddedKv;
use sextant_storage_local::{LocalBlobs, UrlSigner};
use tokio::net::TcpListener;

/// Where `serve` keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `store.redb` and `blobs/` inside the data directory: no other process needed.
    Embedded,
    /// DynamoDB and S3 (or an emulator of them), as a deployment uses.
    Aws(AwsStorageConfig),
}

/// What replicas of one deployment share, beyond its table and bucket: the keys that
/// sign sessions and tokens (a token one replica issued is good on all), and the
/// address clients reach them all at (a load balancer's), for the links they hand out.
#[derive(Debug, Clone)]
pub struct Replicas {
    /// `kid:base64secret[,...]`, as `SEXTANT_JWT_KEYS` gives them.
    pub signing_keys: String,
    pub public_url: Option<url::Url>,
    /// The address SES sends as (an identity it has verified), so mail leaves from
    /// every replica alike; without one, each replica writes its own outbox.
    pub mail_from: Option<String>,
}

impl Replicas {
    /// `SEXTANT_JWT_KEYS`, and `SEXTANT_PUBLIC_URL` and `SEXTANT_MAIL_FROM` if set.
    pub fn from_env() -> anyhow::Result<Self> {
        let signing_keys = std::env::var("SEXTANT_JWT_KEYS").context(
            "SEXTANT_JWT_KEYS is not set: replicas must sign with the same keys              (`kid:base64secret`, 32 bytes or more)",
        )?;
        let public_url = std::env::var("SEXTANT_PUBLIC_URL")
            .ok()
            .map(|url| url.parse().context("SEXTANT_PUBLIC_URL is not a URL"))
            .transpose()?;
        Ok(Self {
            signing_keys,
            public_url,
            mail_from: std::env::var("SEXTANT_MAIL_FROM").ok(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: Backend,
    /// One of several replicas: what they share. `None`: a server alone, keeping its
    /// keys in its data directory.
    pub replicas: Option<Replicas>,
    pub heartbeat_timeout: time::Duration,
    /// How long an access token (`POST /v1/auth/token`, Neptune's sign-in) lasts.
    pub access_token_ttl: time::Duration,
    /// How long an agent's claim on a queued job lasts without a heartbeat.
    pub job_lease: time::Duration,
    pub plan: PricePlan,
    pub operator_token: Option<OperatorTokenHash>,
    pub rate_limits: sextant_edge::rate_limit::RateLimits,
    /// Where the hourly metering runs deliver closed monthly reports.
    pub report_webhook: Option<ReportWebhook>,
}

/// A bound, ready-to-run server. Binding happens first so port 0 works and the URLs
/// the server hands out name the real port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    base_url: url::Url,
    state: AppState,
    report_webhook: Option<ReportWebhook>,
}

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let secrets = secrets::Secrets::load_or_create(&config.data_dir.join("secrets.json"))?;
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let local_addr = listener.local_addr()?;
        let base_url: url::Url = format!("http://{local_addr}").parse()?;

        let mut router = Router::new();
        let storage = match &config.backend {
            Backend::Embedded => {
                let storage = embedded_storage(&config.data_dir, &secrets, &base_url)?;
                router = router.merge(blob_routes::routes(Arc::clone(&storage.1)));
                storage.0
            }
            Backend::Aws(aws) => aws.storage().await,
        };
        let keyring = match &config.replicas {
            Some(replicas) => Keyring::from_spec(&replicas.signing_keys)?,
            None => Keyring::new(&secrets.jwt_keys()?)?,
        };
        let public_url = config
            .replicas
            .as_ref()
            .and_then(|replicas| replicas.public_url.clone())
            .unwrap_or_else(|| base_url.clone());
        let settings = Settings {
            heartbeat_timeout: config.heartbeat_timeout,
            access_token_ttl: config.access_token_ttl,
            // One machine has no Lambda payload cap: Neptune's client may send its
            // largest requests.
            route_body_limits: vec![(
                sextant_api::neptune::INGEST,
                sextant_api::neptune::MAX_INGEST_BYTES,
            )],
            job_lease: config.job_lease,
            plan: config.plan,
            operator_token: config.operator_token,
            rate_limits: config.rate_limits,
            ..Settings::new(Some(public_url))
        };
        // Replicas on AWS with a sender mail through SES, as the functions do; otherwise
        // mail goes to files a newcomer can open, whichever store the server runs on.
        let mail_from = config
            .replicas
            .as_ref()
            .and_then(|replicas| replicas.mail_from.clone());
        let mailer: Arc<dyn sextant_storage::Mailer> = match (&config.backend, mail_from) {
            (Backend::Aws(aws), Some(from)) => Arc::new(aws.mailer(from).await),
            _ => Arc::new(sextant_storage_local::OutboxMailer::new(
                config.data_dir.join("outbox"),
                "Sextant <sextant@localhost>",
            )),
        };
        let state = AppState::new(storage, keyring, settings).with_mailer(mailer);
        // Batches this process stored before it last stopped may wait to be settled.
        let settled =
            sextant_domain::series::hot::settle_noted(&state.store, &state.marks, state.now())
                .await
                .context("settling the batches stored before the last stop")?;
        tracing::debug!(
            runs = settled,
            "settled the runs logged to since the last sweep"
        );
        let routes = sextant_api::routes().merge(sextant_ingest::routes());
        let router =
            http::with_observability(router.merge(http::api_service(routes, state.clone())));
        Ok(Self {
            listener,
            router,
            base_url,
            state,
            report_webhook: config.report_webhook,
        })
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish. The
    /// hourly metering runs in the same process meanwhile, as the schedule runs the
    /// metering function in a deployment.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let metering = tokio::spawn(meter_hourly(Metering {
            webhook: self.report_webhook,
            ..metering(&self.state)
        }));
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        metering.abort();
        served
    }
}

/// Runs the metering function's hourly run a minute after each hour ends, as the
/// EventBridge schedule does.
async fn meter_hourly(metering: Metering) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let next = calendar::hour_of(now) + time::Duration::HOUR + time::Duration::MINUTE;
        tokio::time::sleep((next - now).unsigned_abs()).await;
        let hour = sextant_metering::MeteringHour::ending_at_or_before(next);
        match metering.run(hour).await {
            Ok(report) => tracing::info!(?report, "metering run"),
            Err(err) => tracing::error!(error = %err, "metering run failed; the next one fills in"),
        }
    }
}

/// The embedded store and blob directory of a data directory.
fn embedded_storage(
    data_dir: &Path,
    secrets: &secrets::Secrets,
    base_url: &url::Url,
) -> anyhow::Result<(Storage, Arc<LocalBlobs>)> {
    let blobs = Arc::new(LocalBlobs::open(
        &data_dir.join("blobs"),
        UrlSigner::new(&secrets.url_signing_key()?),
        base_url.clone(),
    )?);
    let storage = Storage {
        kv: Arc::new(open_store(&data_dir.join("store.redb"))?),
        blobs: blobs.clone(),
    };
    Ok((storage, blobs))
}

/// What a server's metering runs work with: its store, plan and slice size, its
/// postman and public URL for budget letters, and no report webhook (`Application`
/// adds the one it was configured with).
pub fn metering(state: &AppState) -> Metering {
    Metering {
        store: state.store.clone(),
        plan: state.settings.plan.clone(),
        verify_slice_bytes: state.settings.verify_slice_bytes,
        postman: state.postman.clone(),
        public_url: state.settings.public_url.clone(),
        webhook: None,
    }
}

/// The store of a data directory no server holds open, for commands that work on it
/// directly. No server runs, so it hands out no URLs.
/// The embedded store of a data directory no server holds open.
pub fn offline_store(data_dir: &Path) -> anyhow::Result<Store> {
    let secrets = secrets::Secrets::load_or_create(&data_dir.join("secrets.json"))?;
    let base_url: url::Url = "http://127.0.0.1:0".parse()?;
    let (storage, _) = embedded_storage(data_dir, &secrets, &base_url)?;
    Ok(Store::new(storage))
}

/// What `sextant meter` does: the metering function's roll-up, sweep and report
/// deliveries, on `store`. `through` rolls up every hour missed up to the hour that
/// ended at or before `at`; otherwise only that hour.
pub async fn meter(
    store: Store,
    plan: PricePlan,
    webhook: Option<ReportWebhook>,
    at: time::OffsetDateTime,
    through: bool,
) -> anyhow::Result<Vec<time::OffsetDateTime>> {
    // No server runs, so no budget letter can link to it: they wait, unsent, for the
    // server's next hourly run, which sends them.
    let metering = Metering {
        store,
        plan,
        verify_slice_bytes: artifacts::VERIFY_SLICE_BYTES,
        postman: None,
        public_url: None,
        webhook,
    };
    let hour = sextant_metering::MeteringHour::ending_at_or_before(at);
    let hours = if through {
        metering.roll_up_through(hour.start).await?
    } else {
        metering.roll_up_hour(hour.start).await?;
        vec![hour.start]
    };
    let swept = metering.sweep_due(hour.end()).await?;
    tracing::info!(
        notes = swept.notes,
        bytes_deleted = swept.bytes_deleted,
        "swept"
    );
    let budgets = metering.evaluate_budgets(hour).await?;
    tracing::info!(teams = budgets.teams, "evaluated budgets");
    let deliveries = metering.deliver_reports().await?;
    tracing::info!(
        delivered = deliveries.delivered,
        failed = deliveries.failed,
        "reports delivered"
    );
    Ok(hours)
}

/// Every tenant's totals for a month, read from a data directory no server holds open.
pub async fn tenant_totals(
    data_dir: &Path,
    plan: PricePlan,
    month: BillingMonth,
) -> anyhow::Result<Vec<TenantTotals>> {
    let store = offline_store(data_dir)?;
    Ok(billing::tenant_totals(&store, &plan, month).await?)
}

/// Every tenant's report and its delivery for a month, read from a data directory no
/// server holds open.
pub async fn report_deliveries(
    data_dir: &Path,
    plan: PricePlan,
    month: BillingMonth,
) -> anyhow::Result<Vec<ReportDelivery>> {
    let store = offline_store(data_dir)?;
    Ok(report_delivery::listing(&store, &plan, month).await?)
}

/// A team's name in a listing; its bill outlives a deleted team.
fn team_cell(team: Option<&str>) -> String {
    team.unwrap_or("(deleted)").to_owned()
}

/// The operator's usage listing as an aligned table, one tenant a line.
pub fn totals_table(totals: &[TenantTotals]) -> String {
    let header = ["TENANT", "TEAM", "STATUS", "POINTS", "GB-HOURS", "TOTAL"];
    let rows = totals.iter().map(|tenant| {
        vec![
            tenant.tenant_id.to_string(),
            team_cell(tenant.team.as_deref()),
            report_delivery::serde_name(tenant.status),
            tenant.points.to_string(),
            tenant.gb_hours.round_dp(6).normalize().to_string(),
            format!("{} {}", tenant.total, tenant.currency),
        ]
    });
    aligned(&header, rows)
}

/// The operator's report listing as an aligned table, one tenant a line.
pub fn deliveries_table(deliveries: &[ReportDelivery]) -> String {
    let header = [
        "TENANT",
        "TEAM",
        "STATUS",
        "TOTAL",
        "DELIVERY",
        "ATTEMPTS",
        "LAST ERROR",
        "DELIVERED AT",
    ];
    let rows = deliveries.iter().map(|row| {
        vec![
            row.totals.tenant_id.to_string(),
            team_cell(row.totals.team.as_deref()),
            report_delivery::serde_name(row.totals.status),
            format!("{} {}", row.totals.total, row.totals.currency),
            row.delivery
                .map_or_else(|| "-".to_owned(), report_delivery::serde_name),
            row.attempts.to_string(),
            row.last_error.clone().unwrap_or_else(|| "-".to_owned()),
            row.delivered_at
                .map_or_else(|| "-".to_owned(), |at| report_delivery::rfc3339(Some(at))),
        ]
    });
    aligned(&header, rows)
}

/// A header and rows as columns padded to their widest cell.
fn aligned(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for row in rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

fn open_store(path: &Path) -> anyhow::Result<EmbeddedKv> {
    EmbeddedKv::open(path).with_context(|| {
        format!(
            "opening {} (is another `sextant serve` using this data directory?)",
            path.display()
        )
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
