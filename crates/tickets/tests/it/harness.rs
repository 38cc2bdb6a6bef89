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
        }
    }

    /// A store in a fresh database of the MongoDB test server, if there is one.
    pub fn mongo(label: &str) -> Option<Self> {
        let store = store_mongo::testing::database_uri(label)?;
        let server = store_mongo::testing::shared()?;
        Some(Self {
            dir: tempfile::tempdir().expect("temp dir"),
            store,
            smoke_server: server.kind() == store_mongo::testing::ServerKind::Jongodb,
        })
    }

    /// Scales a load-test size down on a smoke server (see `smoke_server`).
    pub fn load(&self, full: usize) -> usize {
        if self.smoke_server {
            full.div_ceil(5)
        } else {
            full
        }
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
}

impl Http {
    pub fn new(base: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        Self { agent, base }
    }

    pub fn get(&self, path: &str) -> Reply {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .expect("GET");
        read(response)
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
        read(request.send(body).expect("send"))
    }

    pub fn delete(&self, path: &str) -> Reply {
        let response = self
            .agent
            .delete(format!("{}{path}", self.base))
            .call()
            .expect("DELETE");
        read(response)
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
