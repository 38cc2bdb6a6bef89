//! A MongoDB for tests, over the real wire protocol.
//!
//! - `MONGODB_URI` set: that server (a real replica set, where change streams
//!   and their tests run too).
//! - Otherwise jongodb, an in-memory wire-protocol server from npm: the binary
//!   at `JONGODB_BIN`, else under `${JONGODB_CACHE:-$HOME/.cache/tickets/jongodb}`
//!   where `scripts/install-jongodb.sh` puts it. It runs in its default
//!   standalone profile on a free port.
//! - Neither: with `CI=true` the test fails, saying how to install one;
//!   elsewhere it is skipped with a line on stderr saying why.
//!
//! Each test gets its own database ([`unique_database`]: names never repeat),
//! held by a [`TestDatabase`] that drops it when the test ends, so a run
//! against a real server leaves nothing behind. jongodb has no
//! `dropDatabase`; there its databases go with the process.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::MongoStore;
use crate::error::{code, server_code};

/// How to get a server, for the messages of failing and skipped tests.
pub const INSTALL_HINT: &str = "run scripts/install-jongodb.sh (needs npm), or set MONGODB_URI \
                                to a MongoDB replica set (mongodb://host:27017/?replicaSet=rs0)";

/// The jongodb release the install script fetches.
pub const JONGODB_PACKAGE: &str = "@jongodb/memory-server-bin-linux-x64-gnu";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which kind of server a [`TestServer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The server `MONGODB_URI` names.
    External,
    /// A jongodb process this test binary started.
    Jongodb,
}

/// A server for tests; a jongodb process stops when this is dropped, or when
/// the test process ends however it ends.
#[derive(Debug)]
pub struct TestServer {
    uri: String,
    kind: ServerKind,
    process: Option<(Child, ChildStdin)>,
}

impl TestServer {
    /// `MONGODB_URI` if set, else a new jongodb process.
    pub fn start() -> Result<TestServer, String> {
        if let Ok(uri) = std::env::var("MONGODB_URI")
            && !uri.trim().is_empty()
        {
            return Ok(TestServer {
                uri: uri.trim().to_owned(),
                kind: ServerKind::External,
                process: None,
            });
        }
        Self::start_jongodb()
    }

    /// A new jongodb process on a free port.
    pub fn start_jongodb() -> Result<TestServer, String> {
        let binary = jongodb_binary()?;
        // jongodb stops only when killed. A shell between us and it kills it
        // when our end of its stdin closes, which happens when this value is
        // dropped and also when the test process dies, even by SIGKILL (a
        // shared server in a static is never dropped).
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" --port=0 & server=$!; cat >/dev/null; kill "$server" 2>/dev/null; wait"#)
            .arg(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdin = shell.stdin.take().ok_or("no stdin pipe")?;
        let stdout = shell.stdout.take().ok_or("no stdout pipe")?;
        let (found, uri) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if let Some(uri) = line.trim().strip_prefix("JONGODB_URI=") {
                    let _ = found.send(uri.to_owned());
                    break;
                }
            }
            // Keep draining, so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        let uri = match uri.recv_timeout(STARTUP_TIMEOUT) {
            Ok(uri) => uri,
            Err(_) => {
                drop(stdin);
                let _ = shell.kill();
                let _ = shell.wait();
                return Err(format!(
                    "{} printed no JONGODB_URI line within {STARTUP_TIMEOUT:?}",
                    binary.display()
                ));
            }
        };
        Ok(TestServer {
            uri,
            kind: ServerKind::Jongodb,
            process: Some((shell, stdin)),
        })
    }

    /// The server's URI as given (its path names some database).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The server's URI with `database` as its path.
    pub fn uri_for(&self, database: &str) -> String {
        with_database(&self.uri, database)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((mut shell, stdin)) = self.process.take() {
            drop(stdin);
            for _ in 0..50 {
                if let Ok(Some(_)) = shell.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = shell.kill();
            let _ = shell.wait();
        }
    }
}

/// Where the jongodb binary is: `JONGODB_BIN`, else the install script's place.
pub fn jongodb_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("JONGODB_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = match std::env::var_os("JONGODB_CACHE") {
                Some(cache) => PathBuf::from(cache),
                None => {
                    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
                    PathBuf::from(home).join(".cache/tickets/jongodb")
                }
            };
            cache
                .join("node_modules")
                .join(JONGODB_PACKAGE)
                .join("bin/jongodb")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "MONGODB_URI is not set and there is no jongodb at {}",
            path.display()
        ))
    }
}

/// `uri` with its path (the database) replaced. Credentials authenticate
/// against the database in the path unless `authSource` says otherwise, so
/// that database (or `admin`) becomes the explicit `authSource`.
pub fn with_database(uri: &str, database: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("mongodb", uri));
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let (authority, old) = match location.split_once('/') {
        Some((authority, old)) => (authority, Some(old).filter(|old| !old.is_empty())),
        None => (location, None),
    };
    let mut options: Vec<String> = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|option| !option.is_empty())
        .map(str::to_owned)
        .collect();
    let has_auth_source = options
        .iter()
        .any(|option| option.to_ascii_lowercase().starts_with("authsource="));
    if authority.contains('@') && !has_auth_source {
        options.push(format!("authSource={}", old.unwrap_or("admin")));
    }
    let query = if options.is_empty() {
        String::new()
    } else {
        format!("?{}", options.join("&"))
    };
    format!("{scheme}://{authority}/{database}{query}")
}

/// A database name no other test uses: `t_<label>_<random>`, within MongoDB's
/// limits on length and characters.
pub fn unique_database(label: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let random = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a v7 UUID is random; its head is the clock.
    format!("t_{label}_{}", &random[random.len() - 16..])
}

/// Whether tests run in CI, where a missing server is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci.eq_ignore_ascii_case("true") || ci == "1")
}

/// The server shared by every test of this process, started on first use.
/// `None` (after saying why on stderr) when there is none outside CI; in CI,
/// a panic that says how to install one.
pub fn shared() -> Option<&'static TestServer> {
    static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();
    match SERVER.get_or_init(TestServer::start) {
        Ok(server) => Some(server),
        Err(why) => {
            unavailable(why);
            None
        }
    }
}

fn unavailable(why: &str) {
    if in_ci() {
        panic!("no MongoDB for the tests: {why}; {INSTALL_HINT}");
    }
    // Straight to the process's stderr: the test harness would swallow an
    // `eprintln!` of a passing test, and a skip must never pass silently.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: no MongoDB for this test: {why}; {INSTALL_HINT}"
    );
}

/// A fresh database on the shared server, dropped when the returned guard is,
/// or `None` (the test is skipped, see [`shared`]).
pub fn database(label: &str) -> Option<TestDatabase> {
    let server = shared()?;
    let name = unique_database(label);
    Some(TestDatabase {
        uri: server.uri_for(&name),
        name,
    })
}

/// A connected, migrated store on a fresh database of the shared server, with
/// the guard that drops that database; or `None` (the test is skipped, see
/// [`shared`]).
pub async fn store(label: &str) -> Option<(MongoStore, TestDatabase)> {
    let database = database(label)?;
    match MongoStore::connect(database.uri()).await {
        Ok(store) => Some((store, database)),
        Err(e) => panic!(
            "cannot connect to the test server at {}: {e}",
            database.uri()
        ),
    }
}

/// How long dropping a test database may take before the guard gives up
/// (saying so on stderr).
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// Set once the server has answered `dropDatabase` with CommandNotFound
/// (jongodb): later guards do not ask again.
static NO_DROP_DATABASE: AtomicBool = AtomicBool::new(false);

/// A test's own database on the shared server. Dropping the guard drops the
/// database (`dropDatabase`, through a client of its own, so it works from
/// any runtime or none), unless the test is failing: then the database is
/// kept for inspection and its name printed on stderr. A server without
/// `dropDatabase` (jongodb, code 59) is left alone.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    uri: String,
}

impl TestDatabase {
    /// The database's name (`t_<label>_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URI with this database as its path.
    pub fn uri(&self) -> &str {
        &self.uri
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "kept database {} of a failing test for inspection",
                self.name
            );
            return;
        }
        if NO_DROP_DATABASE.load(Ordering::Relaxed) {
            return;
        }
        // A thread with a runtime of its own: this may run on a test's
        // current-thread runtime, which cannot be blocked on from inside.
        let uri = self.uri.clone();
        let dropped = std::thread::spawn(move || drop_database(&uri))
            .join()
            .unwrap_or_else(|_| Err("the dropping thread panicked".into()));
        if let Err(why) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test database {}: {why}",
                self.name
            );
        }
    }
}

fn drop_database(uri: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime: {e}"))?;
    runtime.block_on(async {
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| e.to_string())?;
        options.server_selection_timeout = Some(DROP_TIMEOUT);
        let client = mongodb::Client::with_options(options).map_err(|e| e.to_string())?;
        let database = client
            .default_database()
            .ok_or("the URI names no database")?;
        let dropped = tokio::time::timeout(DROP_TIMEOUT, database.drop())
            .await
            .map_err(|_| format!("no answer within {DROP_TIMEOUT:?}"))?;
        match dropped {
            Ok(()) => Ok(()),
            Err(e) if server_code(&e) == Some(code::COMMAND_NOT_FOUND) => {
                NO_DROP_DATABASE.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_auth_source_kept() {
        assert_eq!(
            with_database("mongodb://127.0.0.1:4242/test", "t_x"),
            "mongodb://127.0.0.1:4242/t_x"
        );
        assert_eq!(
            with_database("mongodb://a:1,b:2/?replicaSet=rs0", "t_x"),
            "mongodb://a:1,b:2/t_x?replicaSet=rs0"
        );
        assert_eq!(with_database("mongodb://h", "t_x"), "mongodb://h/t_x");
        assert_eq!(
            with_database("mongodb://u:p%2F@h/app?tls=true", "t_x"),
            "mongodb://u:p%2F@h/t_x?tls=true&authSource=app"
        );
        assert_eq!(
            with_database("mongodb+srv://u:p@h/?authSource=admin", "t_x"),
            "mongodb+srv://u:p@h/t_x?authSource=admin"
        );
        assert_eq!(
            with_database("mongodb://u:p@h", "t_x"),
            "mongodb://u:p@h/t_x?authSource=admin"
        );
    }

    #[test]
    fn database_names_are_unique_and_valid() {
        let a = unique_database("wait wakes/on.append");
        let b = unique_database("wait wakes/on.append");
        assert_ne!(a, b);
        assert!(a.len() < 64, "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }
}
