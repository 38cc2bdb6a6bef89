//! `ticketd`: the HTTP server, with the projector in-process unless told not to.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use api::HttpLimits;
use auth::Role;
use clap::{Parser, Subcommand};
use projector::{DeadLetterPolicy, ProjectorConfig};
use tickets::cli::{parse_duration, parse_duration_or_zero};
use tickets::server::ConnectionLimits;
use tickets::telemetry::LogFormat;
use tickets::tokens::{self, AuthMode};
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

    /// How requests are authenticated: off (anyone may do anything; X-Actor
    /// names the actor) or token (bearer tokens, see `ticketd token`)
    /// [default: off on a loopback --listen address, token otherwise]
    #[arg(long, env = "TICKETS_AUTH")]
    auth: Option<AuthMode>,

    /// Allow `--auth off` on a non-loopback address (when something in
    /// front of ticketd authenticates requests).
    #[arg(long, env = "TICKETS_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,

    /// Also accept bearer JWTs signed by a key of this JWKS file (RS256 or
    /// ES256); needs --jwt-issuer and --jwt-audience, and --auth token. The
    /// claims `sub`, `role` and (for customers) `customer` make the principal.
    #[arg(long, env = "TICKETS_JWT_JWKS", requires_all = ["jwt_issuer", "jwt_audience"])]
    jwt_jwks: Option<std::path::PathBuf>,

    /// The `iss` a JWT must carry.
    #[arg(long, env = "TICKETS_JWT_ISSUER", requires = "jwt_jwks")]
    jwt_issuer: Option<String>,

    /// The `aud` a JWT must carry.
    #[arg(long, env = "TICKETS_JWT_AUDIENCE", requires = "jwt_jwks")]
    jwt_audience: Option<String>,

    /// Do not run the projector in this process (run `ticket-projector run` instead).
    #[arg(long, env = "TICKETS_NO_PROJECTOR")]
    no_projector: bool,

    /// Most events the in-process projector folds into one transaction.
    #[arg(long, env = "TICKETS_PROJECTOR_BATCH", default_value_t = ProjectorConfig::default().batch_size)]
    projector_batch: usize,

    /// The in-process projector's longest pause after a batch that was not
    /// full (0ms: none) [default: 20ms on SQLite, 0ms on MongoDB]. Under
    /// write load each projection pauses about as long as its batch took,
    /// leaving SQLite's write lock to the appends and gathering bigger
    /// batches; light traffic is not paused.
    #[arg(long, env = "TICKETS_PROJECTOR_MAX_LINGER", value_parser = parse_duration_or_zero)]
    projector_max_linger: Option<Duration>,

    /// The in-process projector's lease TTL (e.g. 10s): a standby projector
    /// takes over within it if this process dies.
    #[arg(long, env = "TICKETS_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    projector_lease_ttl: Duration,

    /// What the in-process projector does with an event it cannot apply: stop
    /// or skip.
    #[arg(long, env = "TICKETS_DEAD_LETTER_POLICY", default_value = "stop")]
    projector_dead_letter_policy: DeadLetterPolicy,

    /// `/readyz` answers 503 while a projection's lag (age of its oldest
    /// unapplied event) exceeds this.
    #[arg(long, env = "TICKETS_READY_MAX_LAG", default_value = "10s", value_parser = parse_duration)]
    ready_max_lag: Duration,

    /// The longest a read with `min_position` waits for its projection to
    /// reach that position before answering with stale data (`X-Read-Stale`).
    #[arg(long, env = "TICKETS_READ_WAIT_MAX", default_value = "2s", value_parser = parse_duration)]
    read_wait_max: Duration,

    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish
    /// before their connections are closed and the process exits.
    #[arg(long, env = "TICKETS_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    /// While a request waits on the store longer than this and the store has
    /// answered no call of its kind (appends, event reads, view reads) for as
    /// long, more such requests are refused at once with 503 instead of
    /// queueing behind it (0 turns this off).
    #[arg(long, env = "TICKETS_STORE_SILENCE", default_value = "1s", value_parser = parse_duration_or_zero)]
    store_silence: Duration,

    /// Log line format on stderr: pretty or json (one object per line).
    #[arg(
        long,
        env = "TICKETS_LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    log_format: LogFormat,

    /// A file holding the master key that wraps customers' data keys at
    /// rest: 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -hex
    /// 32`). Every process on a store needs the same one once keys are
    /// wrapped with it; keys made before it still open.
    #[arg(long, env = "TICKETS_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<std::path::PathBuf>,

    /// Request bodies larger than this many bytes answer 413.
    #[arg(long, env = "TICKETS_MAX_BODY_BYTES", default_value_t = HttpLimits::default().max_body_bytes)]
    max_body_bytes: usize,

    /// A request (body upload included) taking longer than this (e.g. 30s)
    /// answers 408.
    #[arg(long, env = "TICKETS_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,

    /// Requests handled at once (until their response head); one more
    /// answers 503 with Retry-After at once.
    #[arg(long, env = "TICKETS_MAX_IN_FLIGHT", default_value_t = HttpLimits::default().max_in_flight)]
    max_in_flight: usize,

    /// Change streams (`GET /tickets/stream`) open at once; one more answers
    /// 503 with Retry-After.
    #[arg(long, env = "TICKETS_MAX_STREAMS", default_value_t = HttpLimits::default().max_streams)]
    max_streams: usize,

    /// Change streams one client (its principal, else its IP address) may
    /// hold open; one more answers 429 with Retry-After.
    #[arg(long, env = "TICKETS_MAX_STREAMS_PER_CLIENT", default_value_t = HttpLimits::default().max_streams_per_client)]
    max_streams_per_client: usize,

    /// Connections served at once; more wait in the accept backlog.
    #[arg(long, env = "TICKETS_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,

    /// How long a connection may take to send a request head, or stay idle
    /// between requests (keep-alive), before it is closed (e.g. 10s).
    #[arg(long, env = "TICKETS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending schema migrations to the store and exit, without serving.
    Migrate,
    /// Manage the API tokens clients authenticate with (`--auth token`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Erase a customer (right to erasure): its name, subjects, messages and
    /// notes become unreadable in every event and view; asks first.
    EraseCustomer {
        /// The customer, as its tickets name it.
        customer: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its secret is printed once, as the last line of stdout.
    Create {
        /// What the token may do: customer, agent, admin or metrics.
        #[arg(long)]
        role: Role,
        /// A unique name: the actor its requests are recorded as. Names are
        /// never reused, even after a revocation.
        #[arg(long)]
        name: String,
        /// For a customer token: the customer whose tickets it sees.
        #[arg(long)]
        customer: Option<String>,
    },
    /// List the tokens (never their secrets), revoked ones included.
    List,
    /// Revoke a token: every ticketd on the store refuses it within a second.
    Revoke {
        /// The token's name.
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tickets::telemetry::init_logging(args.log_format);
    tickets::backend::use_master_key_file(args.master_key_file.as_deref())?;
    match args.command {
        Some(Command::Migrate) => return tickets::migrate(&args.store).await,
        Some(Command::EraseCustomer { customer, yes }) => {
            return tickets::erasure::erase_customer(&args.store, &customer, yes).await;
        }
        Some(Command::Token(command)) => {
            return match command {
                TokenCommand::Create {
                    role,
                    name,
                    customer,
                } => tokens::create(&args.store, role, &name, customer.as_deref()).await,
                TokenCommand::List => tokens::list(&args.store).await,
                TokenCommand::Revoke { name } => tokens::revoke(&args.store, &name).await,
            };
        }
        None => {}
    }
    let auth = AuthMode::resolve(args.auth, args.listen, args.insecure_no_auth)?;
    let jwt = match (&args.jwt_jwks, &args.jwt_issuer, &args.jwt_audience) {
        (Some(jwks), Some(issuer), Some(audience)) => {
            if auth == AuthMode::Off {
                anyhow::bail!(
                    "--jwt-jwks needs --auth token: with auth off no credential is checked"
                );
            }
            Some(
                auth::JwtVerifier::from_jwks_file(jwks, issuer, audience)
                    .context("loading --jwt-jwks")?,
            )
        }
        _ => None,
    };
    let max_linger = args
        .projector_max_linger
        .unwrap_or_else(|| args.store.default_max_linger());
    let config = ServerConfig {
        listen: args.listen,
        store: args.store,
        in_process_projector: !args.no_projector,
        projector: ProjectorConfig {
            batch_size: args.projector_batch.max(1),
            max_linger,
            lease_ttl: args.projector_lease_ttl,
            dead_letter_policy: args.projector_dead_letter_policy,
            ..ProjectorConfig::default()
        },
        ready_max_lag: args.ready_max_lag,
        read_wait_max: args.read_wait_max,
        shutdown_grace: args.shutdown_grace,
        store_silence: args.store_silence,
        http: HttpLimits {
            max_body_bytes: args.max_body_bytes,
            request_timeout: args.request_timeout,
            max_in_flight: args.max_in_flight,
            max_streams: args.max_streams,
            max_streams_per_client: args.max_streams_per_client,
        },
        auth,
        jwt,
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
        },
    };
    let shutdown = tickets::shutdown_on_signals();
    tickets::serve(config, shutdown).await.context("ticketd")
}
