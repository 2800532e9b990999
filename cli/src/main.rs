use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use sextant_cli::agent::{self, AgentOptions};
use sextant_cli::client::Client;
use sextant_cli::enqueue::{self, Enqueue};
use sextant_cli::import_mlflow;
use sextant_cli::transfer::{self, UploadOptions};
use sextant_cli::{Application, Backend, Replicas, ServeConfig, shutdown_signal, snapshot};
use sextant_domain::billing::{PricePlan, TenantTotals};
use sextant_domain::calendar::BillingMonth;
use sextant_domain::credentials::operator;
use sextant_domain::report_delivery::{self, ReportDelivery, ReportWebhook};
use sextant_edge::rate_limit::RateLimits;
use sextant_storage_aws::{AwsStorageConfig, TableSetup};

/// Sextant: a hosted experiment tracker for machine-learning teams.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every Sextant function on this machine: over an embedded store, or as one
    /// of many replicas over DynamoDB and S3 (or engines that speak their protocols).
    Serve {
        /// `embedded`: `store.redb` and `blobs/` in the data directory. `aws`: the table
        /// and bucket of `SEXTANT_TABLE` and `SEXTANT_BUCKET` (at
        /// `SEXTANT_AWS_ENDPOINT_URL` if set), signing with `SEXTANT_JWT_KEYS`, which
        /// every replica shares.
        #[arg(long, env = "SEXTANT_STORE", value_enum, default_value_t = StoreKind::Embedded)]
        store: StoreKind,
        /// Address to listen on.
        #[arg(long, env = "SEXTANT_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Where runs, artifacts and server secrets are kept.
        #[arg(long, env = "SEXTANT_DATA_DIR", default_value = ".sextant")]
        data_dir: PathBuf,
        /// Seconds without a heartbeat after which a running run reads as lost.
        #[arg(long, env = "SEXTANT_HEARTBEAT_TIMEOUT_SECS", default_value_t = 600)]
        heartbeat_timeout_secs: u32,
        /// Seconds an access token lasts (API keys traded by the SDK and by Neptune's
        /// client); the client trades its key or refresh token for a new one before.
        #[arg(long, env = "SEXTANT_ACCESS_TOKEN_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..=86_400))]
        access_token_ttl_secs: u32,
        /// Seconds an agent's claim on a queued job lasts without a heartbeat, after
        /// which the job goes back to the queue.
        #[arg(long, env = "SEXTANT_JOB_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
        job_lease_secs: u32,
        #[command(flatten)]
        webhook: Webhook,
    },
    /// Roll up usage for an hour, exactly as the hourly metering function does: on a
    /// data directory no server holds open, or with `--store aws` on the table and
    /// bucket replicas share (as each replica's own hourly run does).
    Meter {
        #[arg(long, env = "SEXTANT_STORE", value_enum, default_value_t = StoreKind::Embedded)]
        store: StoreKind,
        #[arg(long, env = "SEXTANT_DATA_DIR", default_value = ".sextant")]
        data_dir: PathBuf,
        /// Roll up the hour that ended at or before this time (RFC 3339).
        #[arg(long, conflicts_with = "through", value_parser = parse_time)]
        at: Option<time::OffsetDateTime>,
        /// Roll up every hour not yet rolled up, through the one that ended at or
        /// before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        through: Option<time::OffsetDateTime>,
        #[command(flatten)]
        webhook: Webhook,
    },
    /// Exit 0 if the server answers its health check (`/healthz`) within 5 seconds:
    /// for a container's health check, which has no curl.
    Health {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: url::Url,
    },
    /// Operator commands for the whole deployment.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Upload files as artifacts of a run (multipart above 64 MiB; running the same
    /// upload again after an interruption sends only the missing parts).
    Upload {
        #[command(flatten)]
        server: Server,
        /// The run's id.
        run: String,
        /// Files to upload; with `--code`, the repository to snapshot (default: here).
        files: Vec<PathBuf>,
        /// Store under this directory in the run (default: the file names alone).
        #[arg(long)]
        prefix: Option<String>,
        /// checkpoint, model, dataset, code or file.
        #[arg(long)]
        kind: Option<String>,
        /// The step a checkpoint was taken at.
        #[arg(long)]
        step: Option<i64>,
        /// Snapshot the git repository's tracked files (with uncommitted edits) and
        /// record its commit, branch, remote and dirty flag on the run.
        #[arg(long)]
        code: bool,
    },
    /// Print a NEPTUNE_API_TOKEN for the API key: Neptune's stock client
    /// (`neptune-scale`) logs to this server with it. Nothing is sent anywhere.
    NeptuneToken {
        #[command(flatten)]
        server: Server,
    },
    /// Download an artifact of a run, checking its SHA-256.
    Download {
        #[command(flatten)]
        server: Server,
        /// The run's id.
        run: String,
        /// The artifact's path in the run (not with `--code`).
        path: Option<String>,
        /// Where to write it (a file; with `--code`, a directory).
        #[arg(long)]
        to: Option<PathBuf>,
        /// Restore the run's code snapshot.
        #[arg(long)]
        code: bool,
    },
    /// Put a command on a project's queue for an agent to run, with a snapshot of this
    /// git repository's code; prints the job's run id.
    Enqueue {
        #[command(flatten)]
        server: Server,
        /// The project (name or id).
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "default")]
        queue: String,
        /// A param of the run, NAME=VALUE (numbers and true/false kept as such); the
        /// agent passes each to the command as `--NAME VALUE`. Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = enqueue::parse_param)]
        params: Vec<(String, serde_json::Value)>,
        /// A label an agent must have to run the job (`gpu`). Repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The run's name.
        #[arg(long)]
        name: Option<String>,
        /// Claims of the job before it fails when its agents stop answering (default 3).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// The git repository to snapshot.
        #[arg(long, default_value = ".", conflicts_with = "no_code")]
        code_dir: PathBuf,
        /// Run the command in an empty directory instead of a code snapshot.
        #[arg(long)]
        no_code: bool,
        /// The program and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run a queue's jobs on this machine, one at a time.
    Agent {
        #[command(flatten)]
        server: Server,
        /// The project (name or id).
        #[arg(long)]
        project: String,
        #[arg(long, default_value = "default")]
        queue: String,
        /// What this machine has; only jobs needing none other are taken.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// How jobs name this agent (default: host:pid).
        #[arg(long)]
        name: Option<String>,
        /// Exit once no job this agent could run is waiting or running.
        #[arg(long)]
        exit_when_idle: bool,
        /// Seconds between asks while nothing is claimable.
        #[arg(long, default_value_t = 5.0)]
        poll_secs: f64,
        /// Seconds a stopped job has between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10.0)]
        grace_secs: f64,
    },
    /// Copy runs from another tracker into a Sextant project.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Copy experiments' runs (params, tags, every metric point, dataset inputs,
    /// artifacts, status and times) from an MLflow tracking server or an mlruns
    /// directory. Running it again skips runs already imported and redoes any an
    /// interruption left incomplete.
    Mlflow {
        #[command(flatten)]
        server: Server,
        /// The MLflow tracking server (http:// or https://, credentials from
        /// MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and _PASSWORD), or an
        /// mlruns directory (a path or file: URI).
        #[arg(long, value_name = "URI")]
        from: String,
        /// The Sextant project to import into (made if missing).
        #[arg(long)]
        project: String,
        /// An experiment to import, by name or id (default: all). Repeatable.
        #[arg(long = "experiment", value_name = "NAME_OR_ID")]
        experiments: Vec<String>,
        /// Also import what is in MLflow's trash (into Sextant's).
        #[arg(long)]
        include_deleted: bool,
    },
}

/// Where `sextant serve` (and `sextant meter`) find the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Embedded,
    Aws,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Make the DynamoDB table a fresh self-hosted installation needs (its key schema,
    /// on-demand billing, expiry on `ttl`); an existing table is checked and left
    /// alone, and one that differs is refused.
    CreateTable {
        #[arg(long, env = "SEXTANT_TABLE")]
        table: String,
        /// A DynamoDB-compatible endpoint (ScyllaDB Alternator, an emulator); AWS's
        /// when absent.
        #[arg(long, env = "SEXTANT_AWS_ENDPOINT_URL")]
        endpoint_url: Option<String>,
    },
    /// Every tenant's points, GB-hours and total for a month: from a server with the
    /// operator token, or with `--data-dir` from a data directory no server holds open.
    Usage {
        /// `YYYY-MM`; this month when absent.
        #[arg(long)]
        month: Option<String>,
        #[command(flatten)]
        source: ListingSource,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every tenant's report for a month and its delivery to the report webhook
    /// (pending or delivered, attempts, last error): from a server with the operator
    /// token, or with `--data-dir` from a data directory no server holds open.
    Reports {
        /// `YYYY-MM`.
        #[arg(long)]
        month: String,
        #[command(flatten)]
        source: ListingSource,
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (for a spreadsheet) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

/// Where an operator's listing comes from.
#[derive(Debug, Args)]
struct ListingSource {
    /// Read this data directory's store instead of asking a server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The Sextant server.
    #[arg(long, env = "SEXTANT_URL", default_value = "http://127.0.0.1:8080")]
    url: url::Url,
    /// The deployment's operator token (its SHA-256 is the server's
    /// SEXTANT_OPERATOR_TOKEN_SHA256).
    #[arg(long, env = "SEXTANT_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
}

impl ListingSource {
    /// The month's tenants: read by `offline` from the data directory's store, or
    /// asked of the server's operator `route`.
    async fn tenants<T, Offline>(
        self,
        route: &str,
        month: BillingMonth,
        offline: impl FnOnce(PathBuf, PricePlan) -> Offline,
    ) -> anyhow::Result<Vec<T>>
    where
        T: serde::de::DeserializeOwned,
        Offline: Future<Output = anyhow::Result<Vec<T>>>,
    {
        if let Some(dir) = self.data_dir {
            return offline(dir, PricePlan::from_env()?).await;
        }
        let token = self
            .operator_token
            .context("give --data-dir, or SEXTANT_OPERATOR_TOKEN to ask the server")?;
        #[derive(serde::Deserialize)]
        struct Listing<T> {
            tenants: Vec<T>,
        }
        let listing: Listing<T> = Client::new(self.url, token)?
            .get(&format!("{route}?month={month}"))
            .await?;
        Ok(listing.tenants)
    }
}

/// An operator's listing as `--json` prints it.
fn listing_json(month: BillingMonth, tenants: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "month": month.to_string(),
        "tenants": tenants,
    }))?)
}

/// Where the metering runs deliver closed monthly reports (README, Report webhook).
#[derive(Debug, Args)]
struct Webhook {
    /// The operator's invoicing webhook: each closed monthly report is POSTed to it,
    /// signed; none when absent or empty.
    #[arg(long, env = "SEXTANT_REPORT_WEBHOOK_URL", hide_env_values = true)]
    report_webhook_url: Option<String>,
    /// The secret the report webhook's signatures are made with (16 bytes or more).
    #[arg(long, env = "SEXTANT_REPORT_WEBHOOK_SECRET", hide_env_values = true)]
    report_webhook_secret: Option<String>,
}

impl Webhook {
    fn configured(&self) -> anyhow::Result<Option<ReportWebhook>> {
        sextant_metering::report_webhook(
            self.report_webhook_url.as_deref(),
            self.report_webhook_secret.as_deref(),
        )
    }
}

async fn admin_usage(
    month: Option<String>,
    source: ListingSource,
    json: bool,
) -> anyhow::Result<()> {
    let month = match month {
        Some(text) => parse_month(&text)?,
        None => BillingMonth::of(time::OffsetDateTime::now_utc()),
    };
    let tenants: Vec<TenantTotals> = source
        .tenants("v1/admin/usage", month, |dir, plan| async move {
            sextant_cli::tenant_totals(&dir, plan, month).await
        })
        .await?;
    if json {
        println!("{}", listing_json(month, &tenants)?);
    } else {
        print!("{}", sextant_cli::totals_table(&tenants));
    }
    Ok(())
}

fn parse_month(text: &str) -> anyhow::Result<BillingMonth> {
    BillingMonth::parse(text).map_err(|err| anyhow::anyhow!("--month: {err}"))
}

/// The month's reports and their deliveries as `sextant admin reports` prints them.
async fn admin_reports(
    month: String,
    source: ListingSource,
    format: ListingFormat,
) -> anyhow::Result<()> {
    let month = parse_month(&month)?;
    let tenants: Vec<ReportDelivery> = source
        .tenants("v1/admin/reports", month, |dir, plan| async move {
            sextant_cli::report_deliveries(&dir, plan, month).await
        })
        .await?;
    match format {
        ListingFormat::Json => println!("{}", listing_json(month, &tenants)?),
        ListingFormat::Csv => print!("{}", report_delivery::to_csv(&tenants)?),
        ListingFormat::Table => print!("{}", sextant_cli::deliveries_table(&tenants)),
    }
    Ok(())
}

/// How `admin reports` prints its listing.
#[derive(Debug, Clone, Copy)]
enum ListingFormat {
    Table,
    Json,
    Csv,
}

fn seconds(flag: &str, secs: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .with_context(|| format!("{flag} is a number of seconds, not {secs}"))
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| format!("expected an RFC 3339 time such as 2026-11-05T13:00:00Z: {err}"))
}

/// Which server the client commands talk to, and as whom.
#[derive(Debug, Args)]
struct Server {
    /// The Sextant server.
    #[arg(long, env = "SEXTANT_URL", default_value = "http://127.0.0.1:8080")]
    url: url::Url,
    /// An API key of your team.
    #[arg(long, env = "SEXTANT_API_KEY", hide_env_values = true)]
    api_key: String,
}

impl Server {
    fn client(self) -> anyhow::Result<Client> {
        Client::new(self.url, self.api_key)
    }
}

async fn upload(
    client: &Client,
    run: &str,
    files: Vec<PathBuf>,
    prefix: Option<String>,
    kind: Option<String>,
    step: Option<i64>,
) -> anyhow::Result<()> {
    if files.is_empty() {
        bail!("name at least one file to upload");
    }
    for file in files {
        let name = file
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{} has no usable file name", file.display()))?;
        let path = match &prefix {
            Some(prefix) => format!("{}/{name}", prefix.trim_end_matches('/')),
            None => name.to_owned(),
        };
        let options = UploadOptions {
            path,
            kind: kind.clone(),
            step,
            content_type: None,
        };
        let artifact = transfer::upload(client, run, &file, &options).await?;
        println!("{}", serde_json::to_string(&artifact)?);
    }
    Ok(())
}

async fn import_mlflow(client: &Client, options: import_mlflow::Options) -> anyhow::Result<()> {
    let summary = import_mlflow::import(client, &options).await?;
    print!("{summary}");
    if summary.runs_failed > 0 {
        bail!(
            "could not import {} of the runs (see above); running the import again retries them",
            summary.runs_failed
        );
    }
    Ok(())
}

async fn upload_code(client: &Client, run: &str, dir: PathBuf) -> anyhow::Result<()> {
    let git = snapshot::upload(client, run, dir).await?;
    println!("{}", serde_json::to_string(&git)?);
    Ok(())
}

async fn download_code(client: &Client, run: &str, to: Option<PathBuf>) -> anyhow::Result<()> {
    let destination = to.unwrap_or_else(|| PathBuf::from(format!("{run}-code")));
    snapshot::download(client, run, snapshot::SNAPSHOT_PATH, &destination).await?;
    println!("{}", destination.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sextant_domain::telemetry::init();
    match Cli::parse().command {
        Command::Serve {
            store,
            addr,
            data_dir,
            heartbeat_timeout_secs,
            access_token_ttl_secs,
            job_lease_secs,
            webhook,
        } => {
            let (backend, replicas) = match store {
                StoreKind::Embedded => (Backend::Embedded, None),
                StoreKind::Aws => (
                    Backend::Aws(AwsStorageConfig::from_env()?),
                    Some(Replicas::from_env()?),
                ),
            };
            let app = Application::build(ServeConfig {
                addr,
                data_dir: data_dir.clone(),
                backend,
                replicas,
                heartbeat_timeout: time::Duration::seconds(heartbeat_timeout_secs.into()),
                access_token_ttl: time::Duration::seconds(access_token_ttl_secs.into()),
                job_lease: time::Duration::seconds(job_lease_secs.into()),
                plan: PricePlan::from_env()?,
                operator_token: operator::from_env()?,
                rate_limits: RateLimits::from_env()?,
                report_webhook: webhook.configured()?,
            })
            .await?;
            tracing::info!(url = %app.base_url(), data_dir = %data_dir.display(), "sextant is serving");
            app.run_until(shutdown_signal()).await
        }
        Command::Meter {
            store,
            data_dir,
            at,
            through,
            webhook,
        } => {
            let (time, all_missed) = match (at, through) {
                (Some(at), None) => (at, false),
                (None, Some(through)) => (through, true),
                _ => bail!("give --at TIME or --through TIME"),
            };
            let plan = PricePlan::from_env()?;
            let store = match store {
                StoreKind::Embedded => sextant_cli::offline_store(&data_dir)?,
                StoreKind::Aws => {
                    sextant_storage::Store::new(AwsStorageConfig::from_env()?.storage().await)
                }
            };
            for hour in
                sextant_cli::meter(store, plan, webhook.configured()?, time, all_missed).await?
            {
                println!("{hour}");
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::CreateTable {
                    table,
                    endpoint_url,
                },
        } => {
            let kv = sextant_storage_aws::dynamo(&table, endpoint_url.as_deref()).await;
            match kv.ensure_table().await? {
                TableSetup::Created => println!("created the table {table}"),
                TableSetup::AlreadyThere => {
                    println!("the table {table} is there already, as Sextant needs it")
                }
            }
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Usage {
                    month,
                    source,
                    json,
                },
        } => admin_usage(month, source, json).await,
        Command::Admin {
            command:
                AdminCommand::Reports {
                    month,
                    source,
                    json,
                    csv,
                },
        } => {
            let format = match (json, csv) {
                (true, _) => ListingFormat::Json,
                (_, true) => ListingFormat::Csv,
                _ => ListingFormat::Table,
            };
            admin_reports(month, source, format).await
        }
        Command::Upload {
            server,
            run,
            files,
            prefix,
            kind,
            step,
            code,
        } => {
            let client = server.client()?;
            if code {
                if files.len() > 1 {
                    bail!("--code snapshots one repository");
                }
                let dir = files
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| PathBuf::from("."));
                upload_code(&client, &run, dir).await
            } else {
                upload(&client, &run, files, prefix, kind, step).await
            }
        }
        Command::Health { url } => {
            let response = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?
                .get(url.join("healthz")?)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "the health check answered {}",
                response.status()
            );
            Ok(())
        }
        Command::NeptuneToken { server } => {
            println!(
                "{}",
                sextant_api::neptune::api_token(server.url.as_str(), &server.api_key)
            );
            Ok(())
        }
        Command::Download {
            server,
            run,
            path,
            to,
            code,
        } => {
            let client = server.client()?;
            match (code, path) {
                (true, None) => download_code(&client, &run, to).await,
                (false, Some(path)) => {
                    let destination = to
                        .unwrap_or_else(|| PathBuf::from(path.rsplit('/').next().unwrap_or(&path)));
                    transfer::download(&client, &run, &path, &destination).await?;
                    println!("{}", destination.display());
                    Ok(())
                }
                (true, Some(_)) => bail!("--code restores the snapshot; name no path with it"),
                (false, None) => bail!("name the artifact's path, or pass --code"),
            }
        }
        Command::Enqueue {
            server,
            project,
            queue,
            params,
            labels,
            name,
            max_attempts,
            code_dir,
            no_code,
            command,
        } => {
            let job = Enqueue {
                project,
                queue,
                params: params.into_iter().collect(),
                labels,
                name,
                max_attempts,
                code: (!no_code).then_some(code_dir),
                command,
            };
            let job = enqueue::enqueue(&server.client()?, job).await?;
            println!("{}", job["run_id"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Agent {
            server,
            project,
            queue,
            labels,
            name,
            exit_when_idle,
            poll_secs,
            grace_secs,
        } => {
            let options = AgentOptions {
                project,
                queue,
                labels: labels.into_iter().collect(),
                name: name.unwrap_or_else(agent::default_name),
                exit_when_idle,
                poll: seconds("--poll-secs", poll_secs)?,
                grace: seconds("--grace-secs", grace_secs)?,
            };
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stop.cancel();
            });
            agent::run(&server.client()?, &options, shutdown).await
        }
        Command::Import {
            command:
                ImportCommand::Mlflow {
                    server,
                    from,
                    project,
                    experiments,
                    include_deleted,
                },
        } => {
            let options = import_mlflow::Options {
                from,
                project,
                experiments,
                include_deleted,
            };
            import_mlflow(&server.client()?, options).await
        }
    }
}
