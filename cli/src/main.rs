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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sextant_shared::telemetry::init();
    match Cli::parse().command {
        Command::Serve { addr, data_dir } => {
            let app = Application::build(ServeConfig {
                addr,
                data_dir: data_dir.clone(),
                backend: Backend::Embedded,
            })
            .await?;
            tracing::info!(url = %app.base_url(), data_dir = %data_dir.display(), "sextant is serving");
            app.run_until(shutdown_signal()).await
        }
    }
}
