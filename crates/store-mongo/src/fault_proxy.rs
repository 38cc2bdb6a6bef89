//! A fault-injecting TCP proxy between a MongoDB client and its server, for
//! tests of what the store does when the network misbehaves.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:0` and forwards every
//! connection it accepts to one upstream server (`host:port`), whole wire
//! messages at a time. [`FaultProxy::uri`] turns a test server's URI into one
//! that goes through the proxy. The faults are switched on and off through
//! [`Faults`], shared as an `Arc` ([`FaultProxy::faults`]) so that a test can
//! hand it to another thread or task:
//!
//! - [`Faults::freeze`] / [`Faults::thaw`]: while frozen, nothing is forwarded
//!   in either direction, and connections stay open: to the client the
//!   server has stopped answering (no error, no reset). New connections are
//!   still accepted, and are frozen too. Thawing passes on what was held.
//! - [`Faults::swallow_commit_replies`]: the next N `commitTransaction`
//!   commands reach the server, and when the server's reply comes back the
//!   proxy closes the connection instead of passing it on. The commit
//!   happened; the client cannot know.
//! - [`Faults::drop_commits`]: the next N `commitTransaction` commands are
//!   not forwarded: the proxy closes the connection instead. The commit
//!   provably did not happen (that command never reached the server).
//! - [`Faults::commands`]: commands seen from clients, by name, so that a
//!   test can count round trips.
//!
//! Wire format (MongoDB Wire Protocol): every message starts with a 16-byte
//! header whose first field is the message's total length, a little-endian
//! `int32`; the opcode is the fourth field. A command is an `OP_MSG` (2013)
//! whose body (the one section of kind 0) is a BSON document whose first key
//! names the command; the legacy handshake may come as an `OP_QUERY` (2004),
//! whose query document's first key names it. The proxy reads exactly that
//! much and nothing else; it never rewrites a message. Compressed messages
//! (`OP_COMPRESSED`) are forwarded without being named, so a client under
//! test must not enable compression.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more are closed
//! on accept), at most [`MAX_MESSAGE`] bytes per message (a longer length
//! closes the connection). Each connection is one tokio task, all of them
//! owned by the accept task; dropping the [`FaultProxy`] stops the accept
//! task and with it every connection.
//!
//! Driver behaviour a test must allow for: a connection the proxy closes is
//! a network error to the driver, which marks the server unknown, clears its
//! pool, and retries a `commitTransaction` once by itself, so one faulty
//! commit can take two of the counted commits. The proxy talks to exactly
//! one server, so [`FaultProxy::uri`] sets `directConnection=true`: against a
//! replica set, point it at the primary.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

/// Most connections forwarded at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Longest message forwarded: the server's `maxMessageSizeBytes` (48 MB).
pub const MAX_MESSAGE: usize = 48_000_000;

const HEADER: usize = 16;
const OP_MSG: i32 = 2013;
const OP_QUERY: i32 = 2004;
const COMMIT: &str = "commitTransaction";

/// A running proxy. Dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: String,
    faults: Arc<Faults>,
    accept: AbortHandle,
}

/// The proxy's switches and counters, shared by all its connections.
#[derive(Debug)]
pub struct Faults {
    frozen: watch::Sender<bool>,
    swallow_commit_replies: AtomicU64,
    drop_commits: AtomicU64,
    swallowed: AtomicU64,
    dropped: AtomicU64,
    accepted: AtomicU64,
    open: AtomicUsize,
    commands: Mutex<BTreeMap<String, u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            frozen: watch::Sender::new(false),
            swallow_commit_replies: AtomicU64::new(0),
            drop_commits: AtomicU64::new(0),
            swallowed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            commands: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Faults {
    /// Stops forwarding in both directions, holding every connection open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again, starting with what was held.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    pub fn is_frozen(&self) -> bool {
        *self.frozen.borrow()
    }

    /// The next `n` `commitTransaction` commands reach the server, and the
    /// connection of each closes when its reply comes back, instead of
    /// passing the reply on. Replaces what was left of an earlier count;
    /// 0 stops swallowing.
    pub fn swallow_commit_replies(&self, n: u64) {
        self.swallow_commit_replies.store(n, Ordering::SeqCst);
    }

    /// The next `n` `commitTransaction` commands never reach the server: the
    /// connection closes instead. Replaces what was left of an earlier
    /// count; 0 stops dropping. Checked before swallowing.
    pub fn drop_commits(&self, n: u64) {
        self.drop_commits.store(n, Ordering::SeqCst);
    }

    /// Commit replies swallowed so far.
    pub fn swallowed(&self) -> u64 {
        self.swallowed.load(Ordering::SeqCst)
    }

    /// Commits dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many commands named `name` clients have sent (counted when
    /// forwarded, or when dropped).
    pub fn commands(&self, name: &str) -> u64 {
        self.counts().get(name).copied().unwrap_or(0)
    }

    /// Every command name seen, with its count.
    pub fn command_counts(&self) -> BTreeMap<String, u64> {
        self.counts().clone()
    }

    /// Forgets the command counts.
    pub fn reset_counts(&self) {
        self.counts().clear();
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A panic while counting leaves a consistent map.
        self.commands
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, name: &str) {
        *self.counts().entry(name.to_owned()).or_insert(0) += 1;
    }

    /// Takes one from `counter` if it is above zero.
    fn take(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Returns once the proxy is not frozen.
    async fn thawed(&self) {
        let mut frozen = self.frozen.subscribe();
        // The sender lives as long as `self`: an error cannot happen here.
        let _ = frozen.wait_for(|frozen| !*frozen).await;
    }
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream` (`host:port`).
    /// Needs a tokio runtime; the proxy's tasks run on it.
    pub async fn start(upstream: impl Into<String>) -> io::Result<FaultProxy> {
        let upstream = upstream.into();
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let faults = Arc::new(Faults::default());
        let accept = tokio::spawn(accept_loop(listener, upstream.clone(), Arc::clone(&faults)))
            .abort_handle();
        Ok(FaultProxy {
            addr,
            upstream,
            faults,
            accept,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The switches and counters.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// `uri` (a `mongodb://` URI) with its hosts replaced by the proxy and
    /// `directConnection=true` added, keeping credentials, database and
    /// options. `None` for a `mongodb+srv://` URI, whose hosts come from DNS.
    pub fn uri(&self, uri: &str) -> Option<String> {
        let rest = uri.strip_prefix("mongodb://")?;
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = location.split_once('/').unwrap_or((location, ""));
        let credentials = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        let mut options: Vec<&str> = query
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter(|option| {
                !option.is_empty() && !option.to_ascii_lowercase().starts_with("directconnection=")
            })
            .collect();
        options.push("directConnection=true");
        Some(format!(
            "mongodb://{credentials}{}/{path}?{}",
            self.addr,
            options.join("&")
        ))
    }
}

/// The first host (`host:port`, port 27017 when absent) of a `mongodb://`
/// URI: the upstream for a proxy in front of that server.
pub fn first_host(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mongodb://")?;
    let authority = rest.split(['/', '?']).next()?;
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let host = hosts.split(',').next().filter(|host| !host.is_empty())?;
    let has_port = match host.rsplit_once(':') {
        // An IPv6 literal is bracketed: `[::1]:27017`.
        Some((_, port)) => !port.contains(']'),
        None => false,
    };
    Some(if has_port {
        host.to_owned()
    } else {
        format!("{host}:27017")
    })
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it drops
        // the set, which aborts every connection task.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, faults: Arc<Faults>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        faults.accepted.fetch_add(1, Ordering::SeqCst);
        if connections.len() >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        let faults = Arc::clone(&faults);
        let upstream = upstream.clone();
        connections.spawn(async move {
            faults.open.fetch_add(1, Ordering::SeqCst);
            let _open = Open(&faults.open);
            forward(client, &upstream, &faults).await;
        });
    }
}

/// Counts a connection as open while it lives (even when its task is aborted).
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards one connection until either side closes it or a fault does;
/// both sockets close when this returns.
async fn forward(client: TcpStream, upstream: &str, faults: &Faults) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when the command just forwarded is a commit whose reply must not
    // reach the client. A connection carries one command at a time, so the
    // next message from the server is that reply.
    let swallow_reply = AtomicBool::new(false);
    let requests = async {
        loop {
            let Some(message) = read_message(&mut client_read).await else {
                return;
            };
            faults.thawed().await;
            if let Some(name) = command_name(&message) {
                faults.count(name);
                if name == COMMIT {
                    if Faults::take(&faults.drop_commits) {
                        faults.dropped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if Faults::take(&faults.swallow_commit_replies) {
                        swallow_reply.store(true, Ordering::SeqCst);
                    }
                }
            }
            if server_write.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    let replies = async {
        loop {
            let Some(message) = read_message(&mut server_read).await else {
                return;
            };
            faults.thawed().await;
            if swallow_reply.swap(false, Ordering::SeqCst) {
                faults.swallowed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = replies => {}
    }
}

/// One whole wire message (header included), or `None` when the peer
/// closed, failed, or sent a length out of bounds.
async fn read_message(from: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut header = [0_u8; HEADER];
    from.read_exact(&mut header).await.ok()?;
    let length = usize::try_from(i32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]))
    .ok()?;
    if !(HEADER..=MAX_MESSAGE).contains(&length) {
        return None;
    }
    let mut message = vec![0_u8; length];
    message[..HEADER].copy_from_slice(&header);
    from.read_exact(&mut message[HEADER..]).await.ok()?;
    Some(message)
}

fn le_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let bytes: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_le_bytes(bytes))
}

/// The name of the command a client message carries: the first key of an
/// `OP_MSG`'s body or of an `OP_QUERY`'s query document.
pub fn command_name(message: &[u8]) -> Option<&str> {
    match le_i32(message, 12)? {
        OP_MSG => {
            // flagBits, then sections: kind 0 is one BSON document (the
            // body), kind 1 an int32 size then that many bytes in all.
            let mut at = HEADER + 4;
            loop {
                let kind = *message.get(at)?;
                at += 1;
                match kind {
                    0 => return first_key(message, at),
                    1 => at += usize::try_from(le_i32(message, at)?).ok()?,
                    _ => return None,
                }
            }
        }
        OP_QUERY => {
            // flags, fullCollectionName (a C string), numberToSkip,
            // numberToReturn, then the query document.
            let name_at = HEADER + 4;
            let name_end = name_at + message.get(name_at..)?.iter().position(|&b| b == 0)?;
            first_key(message, name_end + 1 + 8)
        }
        _ => None,
    }
}

/// The first key of the BSON document at `at`: past the document's int32
/// length, one element type byte, then the key as a C string.
fn first_key(message: &[u8], at: usize) -> Option<&str> {
    let key_at = at + 4 + 1;
    if *message.get(at + 4)? == 0 {
        return None; // an empty document
    }
    let key = message.get(key_at..)?;
    let end = key.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&key[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn op_msg(body: &mongodb::bson::Document) -> Vec<u8> {
        let mut bytes = Vec::new();
        body.to_writer(&mut bytes).expect("bson");
        let mut message = Vec::new();
        let length = i32::try_from(HEADER + 4 + 1 + bytes.len()).expect("length");
        message.extend_from_slice(&length.to_le_bytes());
        message.extend_from_slice(&7_i32.to_le_bytes());
        message.extend_from_slice(&0_i32.to_le_bytes());
        message.extend_from_slice(&OP_MSG.to_le_bytes());
        message.extend_from_slice(&0_u32.to_le_bytes());
        message.push(0);
        message.extend_from_slice(&bytes);
        message
    }

    #[test]
    fn the_command_is_the_first_key_of_the_body() {
        let commit = op_msg(&doc! { "commitTransaction": 1, "$db": "admin" });
        assert_eq!(command_name(&commit), Some("commitTransaction"));
        // A note that mentions the command is not the command.
        let insert = op_msg(&doc! { "insert": "events", "note": "commitTransaction" });
        assert_eq!(command_name(&insert), Some("insert"));
        assert_eq!(command_name(&commit[..10]), None);
    }

    #[test]
    fn the_first_host_of_a_uri() {
        assert_eq!(
            first_host("mongodb://127.0.0.1:4242/db?x=1").as_deref(),
            Some("127.0.0.1:4242")
        );
        assert_eq!(
            first_host("mongodb://u:p@a,b:2/?replicaSet=rs0").as_deref(),
            Some("a:27017")
        );
        assert_eq!(first_host("mongodb+srv://h/db"), None);
    }
}
