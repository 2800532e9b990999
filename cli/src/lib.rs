//! The `sextant` command. `serve` runs every function's routes in one process over the
//! embedded store and a local blob directory: the same handler code Lambda runs.
//! `upload` and `download` move artifacts between this machine and a server.

pub mod client;
pub mod secrets;
pub mod snapshot;
pub mod transfer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use sextant_shared::auth::jwt::Keyring;
use sextant_shared::http;
use sextant_shared::state::{AppState, Settings};
use sextant_shared::storage::embedded::EmbeddedKv;
use sextant_shared::storage::local_blob::{self, LocalBlobs, UrlSigner};
use sextant_shared::storage::{AwsStorageConfig, Storage};
use tokio::net::TcpListener;

/// Where `serve` keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `store.redb` and `blobs/` inside the data directory: no other process needed.
    Embedded,
    /// DynamoDB and S3 (or an emulator of them), as a deployment uses.
    Aws(AwsStorageConfig),
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub backend: Backend,
    pub heartbeat_timeout: time::Duration,
}

/// A bound, ready-to-run server. Binding happens first so port 0 works and the URLs
/// the server hands out name the real port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    base_url: url::Url,
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
                let blobs = Arc::new(LocalBlobs::open(
                    &config.data_dir.join("blobs"),
                    UrlSigner::new(&secrets.url_signing_key()?),
                    base_url.clone(),
                )?);
                router = router.merge(local_blob::routes(Arc::clone(&blobs)));
                Storage {
                    kv: Arc::new(open_store(&config.data_dir.join("store.redb"))?),
                    blobs,
                }
            }
            Backend::Aws(aws) => aws.storage().await,
        };
        let keyring = Keyring::new(&secrets.jwt_keys()?)?;
        let settings = Settings {
            heartbeat_timeout: config.heartbeat_timeout,
            ..Settings::new(Some(base_url.clone()))
        };
        let state = AppState::new(storage, keyring, settings);
        let routes = sextant_api::routes().merge(sextant_ingest::routes());
        let router = http::with_observability(router.merge(http::api_service(routes, state)));
        Ok(Self {
            listener,
            router,
            base_url,
        })
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")
    }
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
