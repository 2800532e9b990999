use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sextant_cli::{Application, Backend, ServeConfig, shutdown_signal};

/// Sextant: a hosted experiment tracker for machine-learning teams.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every Sextant function on this machine over an embedded store.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SEXTANT_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Where runs, artifacts and server secrets are kept.
        #[arg(long, env = "SEXTANT_DATA_DIR", default_value = ".sextant")]
        data_dir: PathBuf,
        /// Seconds without a heartbeat after which a running run reads as lost.
        #[arg(long, env = "SEXTANT_HEARTBEAT_TIMEOUT_SECS", default_value_t = 600)]
        heartbeat_timeout_secs: u32,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sextant_shared::telemetry::init();
    match Cli::parse().command {
        Command::Serve {
            addr,
            data_dir,
            heartbeat_timeout_secs,
        } => {
            let app = Application::build(ServeConfig {
                addr,
                data_dir: data_dir.clone(),
                backend: Backend::Embedded,
                heartbeat_timeout: time::Duration::seconds(heartbeat_timeout_secs.into()),
            })
            .await?;
            tracing::info!(url = %app.base_url(), data_dir = %data_dir.display(), "sextant is serving");
            app.run_until(shutdown_signal()).await
        }
    }
}
