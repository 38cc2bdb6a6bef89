//! `ticketd`: the HTTP server, with the projector in-process unless told not to.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use projector::ProjectorConfig;
use tickets::{ServerConfig, StoreUrl, store_url::DEFAULT_STORE};

/// Event-sourced support-ticket backend: HTTP API over an event store.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed on stdout).
    #[arg(long, env = "TICKETS_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Event store: sqlite://PATH (created with its folder if missing) or
    /// mongodb://HOST/DATABASE (any URI the MongoDB driver accepts)
    #[arg(long, env = "TICKETS_STORE", default_value = DEFAULT_STORE, global = true)]
    store: StoreUrl,

    /// Do not run the projector in this process (run `ticket-projector run` instead).
    #[arg(long, env = "TICKETS_NO_PROJECTOR")]
    no_projector: bool,

    /// Most events the in-process projector folds into one transaction.
    #[arg(long, env = "TICKETS_PROJECTOR_BATCH", default_value_t = ProjectorConfig::default().batch_size)]
    projector_batch: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending schema migrations to the store and exit, without serving.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tickets::telemetry::init_logging();
    let args = Args::parse();
    if let Some(Command::Migrate) = args.command {
        return tickets::migrate(&args.store).await;
    }
    let config = ServerConfig {
        listen: args.listen,
        store: args.store,
        in_process_projector: !args.no_projector,
        projector: ProjectorConfig {
            batch_size: args.projector_batch.max(1),
            ..ProjectorConfig::default()
        },
    };
    let shutdown = tickets::shutdown_on_signals();
    tickets::serve(config, shutdown).await.context("ticketd")
}
