//! `ticket-projector`: the projector as its own daemon.

use anyhow::Context;
use clap::{Parser, Subcommand};
use projector::ProjectorConfig;
use tickets::{StoreUrl, store_url::DEFAULT_STORE};

/// Follows the event store and keeps the read models current.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow the store until SIGINT/SIGTERM; the batch in flight is committed first.
    Run {
        /// Event store: sqlite://PATH or mongodb://HOST/DATABASE
        #[arg(long, env = "TICKETS_STORE", default_value = DEFAULT_STORE)]
        store: StoreUrl,

        /// Most events folded into one transaction.
        #[arg(long, env = "TICKETS_PROJECTOR_BATCH", default_value_t = ProjectorConfig::default().batch_size)]
        batch_size: usize,
    },
    /// Apply pending schema migrations to the store and exit.
    Migrate {
        /// Event store: sqlite://PATH or mongodb://HOST/DATABASE
        #[arg(long, env = "TICKETS_STORE", default_value = DEFAULT_STORE)]
        store: StoreUrl,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tickets::telemetry::init_logging();
    match Args::parse().command {
        Command::Run { store, batch_size } => {
            let config = ProjectorConfig {
                batch_size: batch_size.max(1),
                ..ProjectorConfig::default()
            };
            let shutdown = tickets::shutdown_on_signals();
            tickets::run_projector(&store, config, shutdown)
                .await
                .context("ticket-projector run")
        }
        Command::Migrate { store } => tickets::migrate(&store).await,
    }
}
