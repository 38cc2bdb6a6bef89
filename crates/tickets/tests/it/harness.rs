//! Starting the real binaries and talking to them over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TICKETD: &str = env!("CARGO_BIN_EXE_ticketd");
pub const PROJECTOR: &str = env!("CARGO_BIN_EXE_ticket-projector");

/// How long anything eventual may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Declares each listed test, a `fn(Workspace)`, once per backend: in module
/// `sqlite` on a temporary file, in module `mongo` on a fresh database of the
/// test server (`MONGODB_URI`, else jongodb; skipped with a reason outside CI
/// when there is neither, a failure in CI).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name($crate::harness::Workspace::sqlite());
            })*
        }
        mod mongo {
            $(#[test]
            fn $name() {
                if let Some(ws) = $crate::harness::Workspace::mongo(stringify!($name)) {
                    super::$name(ws);
                }
            })*
        }
    };
}

/// A temporary folder for logs (and, on SQLite, the database file) plus the
/// store the processes of one test share.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    store: String,
    /// The store is jongodb: correct over the wire, but its inserts slow down
    /// as collections grow (tens of ms at a few thousand documents), so load
    /// tests run a smaller load there.
    smoke_server: bool,
    /// A MongoDB workspace's database, dropped with the workspace.
    _database: Option<store_mongo::testing::TestDatabase>,
}

impl Workspace {
    /// A store in a SQLite file inside the folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = format!("sqlite://{}", dir.path().join("tickets.db").display());
        Self {
            dir,
            store,
            smoke_server: false,
            _database: None,
        }
    }

    /// A store in a fresh database of the MongoDB test server, if there is one.
    pub fn mongo(label: &str) -> Option<Self> {
        let database = store_mongo::testing::database(label)?;
        let server = store_mongo::testing::shared()?;
        Some(Self {
            dir: tempfile::tempdir().expect("temp dir"),
            store: database.uri().to_owned(),
            smoke_server: server.kind() == store_mongo::testing::ServerKind::Jongodb,
            _database: Some(database),
        })
    }

    /// Whether the store is jongodb (see `smoke_server`).
    pub fn is_smoke_server(&self) -> bool {
        self.smoke_server
    }

    /// Scales a load-test size down on a smoke server (see `smoke_server`).
    pub fn load(&self, full: usize) -> usize {
        if self.smoke_server {
            full.div_ceil(5)
        } else {
            full
        }
    }

    /// Whether transactions from different processes are isolated from each
    /// other. jongodb's transactions detect no write conflicts, and a commit
    /// can undo other transactions' committed writes to the same collection
    /// (see docs/mongodb.md), so two processes appending at once can both
    /// take a position there; a real server and SQLite serialise them.
    pub fn cross_process_transactions(&self) -> bool {
        !self.smoke_server
    }

    /// The `--store` URL of this workspace's store.
    pub fn store_url(&self) -> String {
        self.store.clone()
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Events in the store (its head position: positions are gap-free),
    /// asked of the store itself rather than through the API under test.
    pub fn event_count(&self) -> u64 {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let backend = tickets::Backend::open(&url).await.expect("open store");
            backend.events.head().await.expect("head")
        })
    }
}

/// A child process that is killed when dropped.
pub struct Running {
    pub child: Child,
    log: PathBuf,
}

impl Running {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "process ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `ticketd` and the base URL it listens on.
pub struct Ticketd {
    pub process: Running,
    pub http: Http,
}

impl Ticketd {
    /// Starts `ticketd` on the workspace's store with a free port.
    pub fn start(ws: &Workspace, extra: &[&str]) -> Self {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        let store = ws.store_url();
        args.extend(["--store", &store]);
        args.extend(extra);
        Self::start_in(ws.dir.path(), &args, &ws.log("ticketd"))
    }

    /// Starts `ticketd` in `cwd` with exactly `args`.
    pub fn start_in(cwd: &Path, args: &[&str], log: &Path) -> Self {
        let mut child = Command::new(TICKETD)
            .args(args)
            .current_dir(cwd)
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_LISTEN")
            .env_remove("TICKETS_NO_PROJECTOR")
            .env_remove("TICKETS_AUTH")
            .stdout(Stdio::piped())
            .stderr(log_file(log))
            .spawn()
            .expect("spawn ticketd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let process = Running {
            child,
            log: log.to_owned(),
        };
        let base = match rx.recv_timeout(PATIENCE) {
            Ok(base) => base,
            Err(_) => panic!("ticketd did not start; its log:\n{}", process.logs()),
        };
        Ticketd {
            process,
            http: Http::new(base),
        }
    }
}

/// Starts `ticket-projector run` on the workspace's store.
pub fn start_projector(ws: &Workspace) -> Running {
    let log = ws.log("projector");
    let child = Command::new(PROJECTOR)
        .args(["run", "--store", &ws.store_url()])
        .env_remove("TICKETS_STORE")
        .stdout(Stdio::null())
        .stderr(log_file(&log))
        .spawn()
        .expect("spawn ticket-projector");
    Running { child, log }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file")
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    /// Every response header, by lower-case name (the last value of each).
    pub headers: std::collections::HashMap<String, String>,
    pub body: Value,
}

impl Reply {
    /// Asserts a problem+json reply with this status (and field, if given).
    #[track_caller]
    pub fn assert_problem(&self, status: u16, field: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        for key in ["type", "title", "detail"] {
            assert!(
                self.body[key].is_string(),
                "problem without `{key}`: {self:?}"
            );
        }
        if let Some(field) = field {
            assert_eq!(self.body["field"], field, "{self:?}");
        }
    }
}

/// A small blocking HTTP client bound to one server.
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
    /// Sent as `Authorization: Bearer …` with every request, when set.
    bearer: Option<String>,
}

impl Http {
    pub fn new(base: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            // A fresh connection per request. A server that answers before
            // it has read a request's body (a refused media type) may close
            // the connection instead of draining it, and ureq does not retry
            // a PATCH or POST that it sent on such a pooled connection: the
            // next request then failed with "Peer disconnected" (once in CI).
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Self {
            agent,
            base,
            bearer: None,
        }
    }

    /// A client for the same server that sends `secret` as its bearer token.
    pub fn with_bearer(&self, secret: &str) -> Self {
        Self {
            agent: self.agent.clone(),
            base: self.base.clone(),
            bearer: Some(secret.to_owned()),
        }
    }

    fn authorization(&self) -> Option<String> {
        self.bearer
            .as_ref()
            .map(|secret| format!("Bearer {secret}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(authorization) = self.authorization() {
            request = request.header("authorization", authorization);
        }
        read(request.call().expect("GET"))
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, Some("application/json"), &body.to_string())
    }

    pub fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send("PATCH", path, Some("application/json"), &body.to_string())
    }

    /// Any method with a raw body and an optional content type.
    pub fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.agent.post(url),
            "PATCH" => self.agent.patch(url),
            "PUT" => self.agent.put(url),
            other => panic!("unsupported method {other}"),
        };
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(authorization) = self.authorization() {
            request = request.header("authorization", authorization);
        }
        read(request.send(body).expect("send"))
    }

    pub fn delete(&self, path: &str) -> Reply {
        let mut request = self.agent.delete(format!("{}{path}", self.base));
        if let Some(authorization) = self.authorization() {
            request = request.header("authorization", authorization);
        }
        read(request.call().expect("DELETE"))
    }

    /// Creates a ticket and returns its detail.
    #[track_caller]
    pub fn create(&self, customer: &str, subject: &str, message: &str) -> Value {
        let reply = self.post(
            "/tickets",
            &serde_json::json!({"customer": customer, "subject": subject, "message": message}),
        );
        assert_eq!(reply.status, 201, "{reply:?}");
        reply.body
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    let headers = response
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("read body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        content_type,
        location,
        headers,
        body,
    }
}

/// Polls `check` until it returns `Some`, or panics after [`PATIENCE`].
#[track_caller]
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the read model shows the ticket at the given write response.
#[track_caller]
pub fn read_model_reaches(http: &Http, written: &Value) -> Value {
    let path = format!("/tickets/{}", written["id"].as_str().expect("id"));
    eventually("the read model to reach the written version", || {
        let reply = http.get(&path);
        (reply.status == 200 && reply.body["version"] == written["version"]).then_some(reply.body)
    })
}

/// Every list row, following `next_cursor` from the first page.
pub fn all_list_rows(http: &Http, query: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => format!("/tickets?{query}"),
            Some(c) => format!("/tickets?{query}&cursor={c}"),
        };
        let reply = http.get(&path);
        assert_eq!(reply.status, 200, "{reply:?}");
        rows.extend(
            reply.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .cloned(),
        );
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
}

/// A finished `ticket-projector` command.
#[derive(Debug)]
pub struct Ran {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The stdout parsed as JSON (for `--json` commands); panics otherwise.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert!(self.status.success(), "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Workspace {
    /// Runs `ticket-projector ARGS --store <this store>` to the end.
    /// Runs `ticketd` with `args` (a subcommand such as `token create`) on
    /// this workspace's store, and waits for it to exit.
    pub fn ticketd(&self, args: &[&str]) -> Ran {
        let output = Command::new(TICKETD)
            .args(args)
            .args(["--store", &self.store])
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_AUTH")
            .output()
            .expect("run ticketd");
        Ran {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn projector(&self, args: &[&str]) -> Ran {
        let output = Command::new(PROJECTOR)
            .args(args)
            .args(["--store", &self.store])
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_LEASE_TTL")
            .env_remove("TICKETS_PROJECTOR_BATCH")
            .env_remove("TICKETS_PROJECTOR_MAX_LINGER")
            .env_remove("TICKETS_REBUILD_BATCH")
            .output()
            .expect("run ticket-projector");
        Ran {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        self.projector(&["status", "--json"]).json()
    }

    /// Waits until every projection has applied every event. The
    /// projections run independently, so the list or the dashboard may trail
    /// the detail view a little.
    #[track_caller]
    pub fn wait_caught_up(&self) {
        eventually("every projection to reach the head", || {
            let status = self.status();
            status["projections"]
                .as_array()?
                .iter()
                .all(|p| p["lag_events"] == 0)
                .then_some(())
        });
    }

    /// `dead-letters list --json`.
    pub fn dead_letters(&self) -> Vec<Value> {
        match self.projector(&["dead-letters", "list", "--json"]).json() {
            Value::Array(letters) => letters,
            other => panic!("not a list: {other}"),
        }
    }

    /// Starts `ticket-projector ARGS --store <this store>` in the background,
    /// logging to `<log>.log`.
    pub fn spawn_projector(&self, args: &[&str], log: &str) -> Running {
        let log = self.log(log);
        let child = Command::new(PROJECTOR)
            .args(args)
            .args(["--store", &self.store])
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_LEASE_TTL")
            .stdout(Stdio::from(log_file(&log)))
            .stderr(log_file(&log))
            .spawn()
            .expect("spawn ticket-projector");
        Running { child, log }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Appends an event of an unknown type straight into the store, as a newer
    /// writer would: the ticket's next version at the next position. Returns
    /// the position. Nothing else may append meanwhile.
    pub fn insert_poison(&self, ticket: &str, version: u64, event_type: &str) -> u64 {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        let event_id = uuid::Uuid::now_v7().to_string();
        match url {
            tickets::StoreUrl::Sqlite(path) => {
                let mut db = rusqlite::Connection::open(path).expect("open sqlite");
                db.busy_timeout(PATIENCE).expect("busy timeout");
                let tx = db
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .expect("begin");
                let position: i64 = tx
                    .query_row(
                        "SELECT COALESCE(MAX(position), 0) + 1 FROM events",
                        [],
                        |row| row.get(0),
                    )
                    .expect("next position");
                let at = chrono_now_micros();
                tx.execute(
                    "INSERT INTO events (position, event_id, ticket_id, version, event_type, \
                     schema_version, occurred_at, data, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, '{\"merged_into\": \"elsewhere\"}', '{}')",
                    rusqlite::params![position, event_id, ticket, version as i64, event_type, at],
                )
                .expect("insert poison");
                tx.commit().expect("commit");
                position as u64
            }
            tickets::StoreUrl::Mongo(uri) => Self::runtime().block_on(async {
                use mongodb::bson::{Document, doc};
                let store = store_mongo::MongoStore::open(&uri).await.expect("open");
                let db = store.database();
                let counter = db
                    .collection::<Document>("counters")
                    .find_one_and_update(doc! {"_id": "events"}, doc! {"$inc": {"position": 1_i64}})
                    .upsert(true)
                    .return_document(mongodb::options::ReturnDocument::After)
                    .await
                    .expect("counter")
                    .expect("counter document");
                let position = counter.get_i64("position").expect("position");
                db.collection::<Document>("events")
                    .insert_one(doc! {
                        "_id": position,
                        "event_id": event_id,
                        "ticket_id": ticket,
                        "version": version as i64,
                        "event_type": event_type,
                        "schema_version": 1_i64,
                        "occurred_at": mongodb::bson::DateTime::now(),
                        "data": {"merged_into": "elsewhere"},
                        "metadata": {},
                    })
                    .await
                    .expect("insert poison");
                position as u64
            }),
        }
    }

    /// Overwrites one field of a ticket's row in the live list slot, behind
    /// the projector's back.
    pub fn tamper_list_row(&self, ticket: &str, subject: &str) {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        match url {
            tickets::StoreUrl::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).expect("open sqlite");
                db.busy_timeout(PATIENCE).expect("busy timeout");
                let slot: String = db
                    .query_row(
                        "SELECT slot FROM projection_slots WHERE projection = 'list' AND state = 'live'",
                        [],
                        |row| row.get(0),
                    )
                    .expect("live slot");
                let changed = db
                    .execute(
                        &format!("UPDATE list_{slot} SET subject = ?1 WHERE id = ?2"),
                        rusqlite::params![subject, ticket],
                    )
                    .expect("tamper");
                assert_eq!(changed, 1, "no list row for {ticket}");
            }
            tickets::StoreUrl::Mongo(uri) => Self::runtime().block_on(async {
                use mongodb::bson::{Document, doc};
                let store = store_mongo::MongoStore::open(&uri).await.expect("open");
                let db = store.database();
                let live = db
                    .collection::<Document>("projection_slots")
                    .find_one(doc! {"projection": "list", "state": "live"})
                    .await
                    .expect("slots")
                    .expect("a live list slot");
                let slot = live.get_str("slot").expect("slot");
                let changed = db
                    .collection::<Document>(&format!("list_{slot}"))
                    .update_one(doc! {"_id": ticket}, doc! {"$set": {"subject": subject}})
                    .await
                    .expect("tamper");
                assert_eq!(changed.matched_count, 1, "no list row for {ticket}");
            }),
        }
    }
}

impl Workspace {
    /// Marks the live slot of `projection` as built by an older version of the
    /// projection's code, as a store left by an older build would be.
    pub fn age_live_slot(&self, projection: &str, version: i64) {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        match url {
            tickets::StoreUrl::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).expect("open sqlite");
                db.busy_timeout(PATIENCE).expect("busy timeout");
                let changed = db
                    .execute(
                        "UPDATE projection_slots SET version = ?1
                         WHERE projection = ?2 AND state = 'live'",
                        rusqlite::params![version, projection],
                    )
                    .expect("age the live slot");
                assert_eq!(changed, 1, "no live {projection} slot");
            }
            tickets::StoreUrl::Mongo(uri) => Self::runtime().block_on(async {
                use mongodb::bson::{Document, doc};
                let store = store_mongo::MongoStore::open(&uri).await.expect("open");
                let changed = store
                    .database()
                    .collection::<Document>("projection_slots")
                    .update_one(
                        doc! {"projection": projection, "state": "live"},
                        doc! {"$set": {"version": version}},
                    )
                    .await
                    .expect("age the live slot");
                assert_eq!(changed.matched_count, 1, "no live {projection} slot");
            }),
        }
    }
}

/// Now as the SQLite store spells times: RFC 3339 UTC, six fractional digits.
fn chrono_now_micros() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A deterministic pseudo-random sequence (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Creates tickets and changes them at random; returns the last write response
/// of every ticket: the truth the views must end up equal to.
pub fn write_load(http: &Http, seed: u64, tickets: usize) -> Vec<Value> {
    let mut rng = Rng(seed);
    let mut last = Vec::new();
    for n in 0..tickets {
        let mut ticket = http.create(&format!("customer {seed}-{n}"), "subject", "message body");
        let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
        for _ in 0..4 {
            let status = ["open", "triaged", "closed"][rng.next(3) as usize];
            let agent = [
                serde_json::json!("ana"),
                serde_json::json!("bo"),
                Value::Null,
            ][rng.next(3) as usize]
                .clone();
            let body = match rng.next(4) {
                0 => serde_json::json!({ "status": status }),
                1 => serde_json::json!({ "agent": agent }),
                2 => serde_json::json!({"note": format!("note {}", rng.next(1000))}),
                _ => serde_json::json!({"status": "triaged", "note": "triage"}),
            };
            let reply = http.patch(&path, &body);
            match reply.status {
                200 => ticket = reply.body,
                409 => assert_eq!(ticket["status"], "closed", "{reply:?}"),
                other => panic!("unexpected {other}: {reply:?}"),
            }
        }
        last.push(ticket);
    }
    last
}

/// The dashboard the write responses say the views must show.
pub fn dashboard_of(truth: &[Value]) -> Value {
    let count = |status: &str| truth.iter().filter(|t| t["status"] == status).count();
    serde_json::json!({
        "open": count("open"),
        "triaged": count("triaged"),
        "closed": count("closed"),
        "total": truth.len(),
    })
}

/// One event as the store holds it, read around the API under test.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub ticket: String,
    pub version: u64,
    pub event_type: String,
    pub data: Value,
}

impl Workspace {
    /// Every event in the store, ordered by (ticket, version), read from the
    /// store itself rather than through the API under test, its personal
    /// fields opened.
    pub fn stored_events(&self) -> Vec<StoredEvent> {
        self.read_store(false)
    }

    /// [`Workspace::stored_events`] as they are stored: personal fields sealed.
    pub fn sealed_events(&self) -> Vec<StoredEvent> {
        self.read_store(true)
    }

    /// Appends events straight to the store underneath the sealing, as a
    /// version of this project from before it sealed personal fields did:
    /// `(type, payload)` at versions 1, 2, … of a new ticket; returns its id.
    pub fn append_in_clear(&self, events: &[(&str, Value)]) -> String {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        let ticket = uuid::Uuid::now_v7();
        let events = events
            .iter()
            .map(|(kind, data)| eventstore::NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: (*kind).to_owned(),
                schema_version: 1,
                occurred_at: chrono::Utc::now(),
                data: eventstore::Payload::from_value(data),
                metadata: eventstore::Metadata::default(),
            })
            .collect();
        Self::runtime().block_on(async {
            let backend = tickets::Backend::open(&url).await.expect("open store");
            backend
                .raw_events
                .append(ticket, 0, events)
                .await
                .expect("append in clear");
        });
        ticket.to_string()
    }

    fn read_store(&self, sealed: bool) -> Vec<StoredEvent> {
        let url: tickets::StoreUrl = self.store.parse().expect("store url");
        Self::runtime().block_on(async {
            let backend = tickets::Backend::open(&url).await.expect("open store");
            let store = if sealed {
                &backend.raw_events
            } else {
                &backend.events
            };
            let mut events = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .read_by_ticket(after, 1_000)
                    .await
                    .expect("read the store by ticket");
                let Some(last) = page.last() else {
                    return events;
                };
                after = Some((last.ticket_id, last.version));
                events.extend(page.into_iter().map(|event| StoredEvent {
                    ticket: event.ticket_id.to_string(),
                    version: event.version,
                    event_type: event.event_type,
                    data: event.data.to_value(),
                }));
            }
        })
    }
}
