//! A SQLite store on a filesystem that fills up under load.
//!
//! The store lives on a small tmpfs of its own (mounting one needs root: CI
//! runs as root; elsewhere the test skips and says why, and fails in CI).
//! Writers create and change tickets over HTTP, each write with an
//! `Idempotency-Key`, retried with the same key after a `503`. A ballast
//! file then takes every free byte of the filesystem. While it is there,
//! writes must answer `503` problem at once (never a `500`, never a hang),
//! reads must answer `200`, and no process may exit; once it is deleted,
//! writes succeed again and the projector catches up, with nothing
//! restarted. At the end every acknowledged write must be in the events
//! table at its acknowledged position and version, nothing refused may be
//! there, and `ticket-projector verify` must find no difference.
//!
//! Two cases: the projector inside `ticketd`, and `ticketd --no-projector`
//! beside a `ticket-projector run` daemon, which is frozen (SIGSTOP) while a
//! backlog is written and thawed once the disk is full, so that it meets the
//! full disk with events to apply. Both run with a 2 s lease TTL and keep the
//! disk full for longer, so their leases expire under them and must be taken
//! again afterwards.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{PATIENCE, PROJECTOR, Ran, Reply, Rng, Ticketd, eventually};

/// The filesystem the store lives on: room for the store and its log under
/// this load, small enough to fill at once.
const FILESYSTEM: &str = "32m";
/// Concurrent writers.
const WRITERS: usize = 4;
/// The lease TTL of both projectors: shorter than the full-disk window, so
/// that their leases expire while no heartbeat can be written.
const LEASE_TTL: &str = "2s";
/// The least time the disk stays full once writes are refused.
const FULL_FOR: Duration = Duration::from_secs(4);
/// `503`s to see before the disk is freed.
const REFUSALS: usize = 20;
/// The slowest answer a write may take on a full disk: far below the 30 s
/// request timeout, which is what a write stuck on the store would hit.
const PROMPT: Duration = Duration::from_secs(10);
/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

#[test]
fn with_the_projector_in_ticketd() {
    run(Case::InProcess);
}

#[test]
fn with_a_projector_daemon() {
    run(Case::Daemon);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    InProcess,
    Daemon,
}

fn run(case: Case) {
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let store = format!("sqlite://{}", disk.db().display());
    let ticketd_args = match case {
        Case::InProcess => vec!["--projector-lease-ttl", LEASE_TTL],
        Case::Daemon => vec!["--no-projector"],
    };
    let mut args = vec!["--listen", "127.0.0.1:0", "--store", &store];
    args.extend(ticketd_args);
    let mut ticketd = Ticketd::start_in(disk.logs(), &args, &disk.log("ticketd"));
    let ticketd_pid = ticketd.process.child.id();
    let mut daemon = (case == Case::Daemon).then(|| Daemon::start(&disk, &store));

    let shared = Arc::new(Shared::default());
    let client = Arc::new(Client::new(ticketd.http.base.clone()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let (client, shared) = (client.clone(), shared.clone());
            std::thread::spawn(move || writer(n, &client, &shared))
        })
        .collect();
    shared.wait_for_acks("writes before the fill", 150);

    // The daemon meets the full disk with a backlog: frozen (not holding the
    // write lock) while more is acknowledged, thawed once the disk is full.
    if let Some(daemon) = &mut daemon {
        shared.hold_writers();
        wait_caught_up(&store);
        daemon.freeze(&disk.db());
        shared.release_writers();
        let acked = shared.acked();
        shared.wait_for_acks("the daemon's backlog", acked + 60);
    }

    // Fill the filesystem.
    shared.phase.store(Phase::Full as u8, Ordering::SeqCst);
    let ballast = Ballast::fill(&disk.mount);
    let filled_at = Instant::now();
    eventually_long("writes to answer 503 on the full disk", || {
        (shared.outcomes().refused.len() >= 3).then_some(())
    });
    let daemon_cpu_before = daemon.as_mut().map(|daemon| {
        daemon.thaw();
        daemon.cpu()
    });
    let thawed_at = Instant::now();

    // While it is full: reads answer, nothing exits, writes keep being refused.
    let mut reads = 0;
    let mut readyz = BTreeMap::<u16, usize>::new();
    let mut daemon_lag_seen = false;
    let sample = shared.some_ticket();
    while filled_at.elapsed() < FULL_FOR || shared.outcomes().refused.len() < REFUSALS {
        assert!(
            filled_at.elapsed() < PATIENCE * 2,
            "the full disk refused only {} writes",
            shared.outcomes().refused.len()
        );
        for path in [
            "/tickets?limit=20".to_owned(),
            format!("/tickets/{sample}"),
            format!("/tickets/{sample}/events"),
            "/dashboard".to_owned(),
            "/healthz".to_owned(),
        ] {
            let reply = ticketd.http.get(&path);
            assert_eq!(reply.status, 200, "GET {path} on a full disk: {reply:?}");
            reads += 1;
        }
        *readyz
            .entry(ticketd.http.get("/readyz").status)
            .or_default() += 1;
        if let Some(daemon) = &mut daemon {
            daemon.assert_alive();
            // The thawed daemon cannot commit its backlog: lag stays. (The
            // dashboard's commit, a few counter rows, may still fit in what
            // room the SQLite log had left; the detail and list rows of a
            // backlog do not.)
            if thawed_at.elapsed() > Duration::from_secs(1) && !daemon_lag_seen {
                let status = projector(&store, &["status", "--json"]).json();
                daemon_lag_seen = status["projections"]
                    .as_array()
                    .expect("projections")
                    .iter()
                    .filter(|p| p["projection"] != "dashboard")
                    .all(|p| p["lag_events"].as_u64() > Some(0));
            }
        }
        assert!(
            ticketd.process.child.try_wait().expect("wait").is_none(),
            "ticketd exited on the full disk; its log:\n{}",
            ticketd.process.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let full_for = filled_at.elapsed();
    let daemon_cpu = daemon
        .as_mut()
        .zip(daemon_cpu_before)
        .map(|(daemon, before)| {
            (daemon.cpu() - before).as_secs_f64() / thawed_at.elapsed().as_secs_f64()
        });
    if case == Case::Daemon {
        assert!(
            daemon_lag_seen,
            "the thawed daemon applied its backlog on a full disk, or status never answered"
        );
    }

    // Free the space: writes succeed again, nothing restarted.
    drop(ballast);
    shared.phase.store(Phase::Freed as u8, Ordering::SeqCst);
    let freed_at = Instant::now();
    let acked = shared.acked();
    shared.wait_for_acks("writes after the space came back", acked + 40);
    let resumed_in = freed_at.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("a writer panicked");
    }
    let outcomes = std::mem::take(&mut *shared.outcomes());
    assert!(
        outcomes.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        outcomes.unexpected
    );
    for refusal in &outcomes.refused {
        assert!(
            refusal.phases.0 == Phase::Full || refusal.phases.1 == Phase::Full,
            "a 503 while the disk had room: {refusal:?}"
        );
    }
    let slowest = outcomes
        .refused
        .iter()
        .map(|r| r.took)
        .max()
        .unwrap_or_default();
    assert!(slowest < PROMPT, "a 503 took {slowest:?}");

    // The projector(s) catch up and the views hold every acknowledged write.
    wait_caught_up(&store);
    let last = last_versions(&outcomes.acked);
    for (ticket, version) in &last {
        let reply = ticketd.http.get(&format!("/tickets/{ticket}"));
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body["version"], *version, "{ticket}: {reply:?}");
    }
    assert_eq!(
        ticketd.process.child.id(),
        ticketd_pid,
        "ticketd was restarted"
    );
    assert!(ticketd.process.child.try_wait().expect("wait").is_none());
    if let Some(daemon) = &mut daemon {
        daemon.assert_alive();
    }
    let letters = projector(&store, &["dead-letters", "list", "--json"]).json();
    assert_eq!(letters, json!([]), "dead letters after a full disk");
    let verify = projector(&store, &["verify"]);
    assert!(
        verify.status.success() && verify.stdout.contains("the views match"),
        "verify after the full disk: {verify:?}"
    );

    // Every acknowledged write is stored at its position and version, and
    // nothing else is: no refused write was appended after all.
    let lost = lost_writes(&disk.db(), &outcomes.acked, &last);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:#?}");

    let readyz: Vec<String> = readyz.iter().map(|(s, n)| format!("{n}x {s}")).collect();
    eprintln!(
        "disk_full ({case:?}): {} writes acknowledged ({} while the disk was full), {} answered \
         503 problem while full (slowest {slowest:.1?}), {} acknowledged after a 503 with the \
         same key (none replayed); disk full for {full_for:.1?}: {reads} reads answered 200, \
         /readyz {}{}; writes resumed {resumed_in:.1?} after the space was freed, views caught \
         up, verify: 0 differences; {} acknowledged writes checked, lost {}",
        outcomes.acked.len(),
        outcomes
            .acked
            .iter()
            .filter(|a| a.phase == Phase::Full)
            .count(),
        outcomes.refused.len(),
        outcomes.retried,
        readyz.join(", "),
        daemon_cpu.map_or(String::new(), |share| format!(
            "; the thawed daemon used {:.0}% of a core meanwhile",
            share * 100.0
        )),
        outcomes.acked.len(),
        lost.len(),
    );
    if let Some(share) = daemon_cpu {
        assert!(share < 0.5, "the daemon spun on the full disk: {share:.2}");
    }
    drop(daemon);
    drop(ticketd);
}

/// The small filesystem: a tmpfs mounted in a temporary folder, and a folder
/// for logs beside it (off the small filesystem, so that they stay whole).
/// Unmounted when dropped, panic or not; the processes on it must be gone by
/// then (they are dropped first, being declared after it).
struct SmallDisk {
    mount: PathBuf,
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts it, or says why not: skipped outside CI, a failure in CI.
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        std::fs::create_dir(dir.path().join("logs")).expect("log folder");
        let mounted = effective_uid()
            .filter(|uid| *uid != 0)
            .map(|uid| Err(format!("mounting a tmpfs needs root; this is uid {uid}")))
            .unwrap_or_else(|| {
                let output = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={FILESYSTEM}"), "tmpfs"])
                    .arg(&mount)
                    .output()
                    .map_err(|e| format!("cannot run mount: {e}"))?;
                if output.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "mount -t tmpfs failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    ))
                }
            });
        match mounted {
            Ok(()) => Some(SmallDisk { mount, dir }),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("the full-disk test needs a small filesystem of its own: {why}")
            }
            Err(why) => {
                eprintln!("skipping the full-disk test (CI would fail it): {why}");
                None
            }
        }
    }

    fn db(&self) -> PathBuf {
        self.mount.join("tickets.db")
    }

    fn logs(&self) -> &Path {
        self.dir.path()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.mount).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Something still has a file open: detach it now, freed once closed.
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A file that takes every free byte of the filesystem; deleted when dropped.
struct Ballast {
    path: PathBuf,
}

impl Ballast {
    /// Writes ever smaller pieces until not even one byte fits.
    fn fill(mount: &Path) -> Ballast {
        let path = mount.join("ballast");
        let mut file = std::fs::File::create(&path).expect("create the ballast");
        let chunk = vec![0xA5_u8; 1 << 20];
        for size in [1 << 20, 64 << 10, 4 << 10, 1] {
            loop {
                match file.write(&chunk[..size]) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
                    Err(e) => panic!("writing the ballast: {e}"),
                }
            }
        }
        Ballast { path }
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).expect("delete the ballast");
    }
}

/// `ticket-projector run` on the store, killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
    frozen: bool,
}

impl Daemon {
    fn start(disk: &SmallDisk, store: &str) -> Daemon {
        let log = disk.log("projector");
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("log file")
        };
        let child = Command::new(PROJECTOR)
            .args(["run", "--store", store, "--lease-ttl", LEASE_TTL])
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_LEASE_TTL")
            .stdout(Stdio::from(file()))
            .stderr(Stdio::from(file()))
            .spawn()
            .expect("spawn ticket-projector");
        Daemon {
            child,
            log,
            frozen: false,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the process (SIGSTOP) at a moment it does not hold the file's
    /// write lock, which would stop every append with it.
    fn freeze(&mut self, db: &Path) {
        eventually("the daemon frozen without the write lock", || {
            self.signal("-STOP");
            self.frozen = true;
            if write_lock_is_free(db) {
                return Some(());
            }
            self.thaw();
            std::thread::sleep(Duration::from_millis(5));
            None
        });
    }

    fn thaw(&mut self) {
        self.signal("-CONT");
        self.frozen = false;
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!(
                "ticket-projector exited ({status}); its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// CPU time the process used so far (user and system).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the daemon's /proc stat");
        // Fields after the command name, which is in parentheses: utime and
        // stime are the 12th and 13th, in clock ticks (100 a second on Linux).
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<u64> = after
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("ticks"))
            .collect();
        Duration::from_millis((fields[0] + fields[1]) * 10)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.frozen {
            self.thaw();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_lock_is_free(db: &Path) -> bool {
    let connection = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the store");
    connection
        .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        .is_ok()
}

fn projector(store: &str, args: &[&str]) -> Ran {
    let output = Command::new(PROJECTOR)
        .args(args)
        .args(["--store", store])
        .env_remove("TICKETS_STORE")
        .output()
        .expect("run ticket-projector");
    Ran {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[track_caller]
fn wait_caught_up(store: &str) {
    eventually_long("every projection to reach the head", || {
        let status = projector(store, &["status", "--json"]).json();
        status["projections"]
            .as_array()?
            .iter()
            .all(|p| p["lag_events"] == 0)
            .then_some(())
    });
}

/// [`eventually`] with twice the patience: a loaded CI machine runs both
/// cases, and the other tests, at once.
#[track_caller]
fn eventually_long<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the test is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Room = 0,
    Full = 1,
    Freed = 2,
}

impl Phase {
    fn from(value: u8) -> Phase {
        match value {
            0 => Phase::Room,
            1 => Phase::Full,
            _ => Phase::Freed,
        }
    }
}

/// What the writers and the test share.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    /// Writers wait between writes while set; `holding` counts those waiting.
    hold: AtomicBool,
    holding: AtomicUsize,
    stop: AtomicBool,
    outcomes: Mutex<Outcomes>,
}

impl Shared {
    fn phase(&self) -> Phase {
        Phase::from(self.phase.load(Ordering::SeqCst))
    }

    fn outcomes(&self) -> std::sync::MutexGuard<'_, Outcomes> {
        self.outcomes.lock().expect("outcomes")
    }

    fn acked(&self) -> usize {
        self.outcomes().acked.len()
    }

    fn some_ticket(&self) -> String {
        self.outcomes().acked[0].ticket.clone()
    }

    #[track_caller]
    fn wait_for_acks(&self, what: &str, count: usize) {
        eventually_long(what, || {
            let outcomes = self.outcomes();
            assert!(
                outcomes.unexpected.is_empty(),
                "unexpected answers: {:#?}",
                outcomes.unexpected
            );
            (outcomes.acked.len() >= count).then_some(())
        });
    }

    fn hold_writers(&self) {
        self.hold.store(true, Ordering::SeqCst);
        eventually_long("the writers to pause", || {
            (self.holding.load(Ordering::SeqCst) == WRITERS).then_some(())
        });
    }

    fn release_writers(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }
}

/// Every answer the writers got.
#[derive(Debug, Default)]
struct Outcomes {
    acked: Vec<Ack>,
    refused: Vec<Refusal>,
    /// Writes acknowledged after an earlier `503` to the same key.
    retried: usize,
    unexpected: Vec<String>,
}

/// An acknowledged (2xx) write.
#[derive(Debug, Clone)]
struct Ack {
    ticket: String,
    version: u64,
    position: u64,
    /// The phase when the request was sent.
    phase: Phase,
}

/// A `503`.
#[derive(Debug, Clone)]
struct Refusal {
    /// The phases when the request was sent and when it was answered.
    phases: (Phase, Phase),
    took: Duration,
}

/// One writer: tickets opened and changed one after the other, each write
/// retried with its key until acknowledged.
fn writer(n: usize, client: &Client, shared: &Shared) {
    let mut rng = Rng(0x5eed + n as u64);
    let mut serial = 0_u64;
    let mut next_key = || {
        serial += 1;
        format!("disk-full-{n}-{serial}")
    };
    while !shared.stop.load(Ordering::SeqCst) {
        let body = json!({
            "customer": format!("customer {n}"),
            "subject": "the disk is full",
            "message": "x".repeat(200 + rng.next(400) as usize),
        });
        let Some(ticket) = write(client, shared, "POST", "/tickets", &next_key(), &body) else {
            return;
        };
        let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
        for _ in 0..4 {
            let note = "n".repeat(50 + rng.next(300) as usize);
            let status = ["open", "triaged"][rng.next(2) as usize];
            let agent = ["ana", "bo"][rng.next(2) as usize];
            let body = match rng.next(3) {
                0 => json!({ "note": note }),
                1 => json!({ "status": status, "note": note }),
                _ => json!({ "agent": agent, "note": note }),
            };
            if write(client, shared, "PATCH", &path, &next_key(), &body).is_none() {
                return;
            }
        }
    }
}

/// Sends one write until it is acknowledged, recording every answer; `None`
/// when an answer was neither 2xx nor 503 (recorded as unexpected).
fn write(
    client: &Client,
    shared: &Shared,
    method: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> Option<Value> {
    if shared.hold.load(Ordering::SeqCst) {
        shared.holding.fetch_add(1, Ordering::SeqCst);
        while shared.hold.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        shared.holding.fetch_sub(1, Ordering::SeqCst);
    }
    let first = Instant::now();
    let mut refused = false;
    loop {
        let phase = shared.phase();
        let sent = Instant::now();
        let reply = client.send(method, path, key, body);
        let took = sent.elapsed();
        let mut outcomes = shared.outcomes();
        match reply.status {
            200 | 201 => {
                if refused && reply.headers.contains_key("idempotent-replayed") {
                    outcomes.unexpected.push(format!(
                        "{method} {path} answered 503 and yet had been appended: {reply:?}"
                    ));
                    return None;
                }
                let position = reply.headers.get("x-event-position").map(|p| p.parse());
                let (Some(ticket), Some(version), Some(Ok(position))) = (
                    reply.body["id"].as_str(),
                    reply.body["version"].as_u64(),
                    position,
                ) else {
                    outcomes
                        .unexpected
                        .push(format!("{method} {path}: {reply:?}"));
                    return None;
                };
                outcomes.acked.push(Ack {
                    ticket: ticket.to_owned(),
                    version,
                    position,
                    phase,
                });
                outcomes.retried += usize::from(refused);
                return Some(reply.body);
            }
            503 if reply.content_type == "application/problem+json"
                && reply.body["status"] == 503
                && reply.headers.contains_key("retry-after") =>
            {
                let phases = (phase, shared.phase());
                outcomes.refused.push(Refusal { phases, took });
                refused = true;
            }
            _ => {
                outcomes.unexpected.push(format!(
                    "{method} {path} in phase {phase:?} after {took:?}: {reply:?}"
                ));
                return None;
            }
        }
        drop(outcomes);
        if first.elapsed() > PATIENCE * 3 {
            shared.outcomes().unexpected.push(format!(
                "{method} {path} never acknowledged within {:?}",
                PATIENCE * 3
            ));
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client for writes with an `Idempotency-Key`.
struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn new(base: String) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Longer than ticketd's request timeout, so that a write stuck
            // on the store shows as its 408 rather than as a client error.
            .timeout_global(Some(Duration::from_secs(45)))
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Client { agent, base }
    }

    fn send(&self, method: &str, path: &str, key: &str, body: &Value) -> Reply {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "POST" => self.agent.post(url),
            "PATCH" => self.agent.patch(url),
            other => panic!("unsupported method {other}"),
        };
        let mut response = request
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers: HashMap<String, String> = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let text = response.body_mut().read_to_string().expect("read the body");
        Reply {
            status: response.status().as_u16(),
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            location: headers.get("location").cloned(),
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        }
    }
}

/// Each ticket's last acknowledged version.
fn last_versions(acked: &[Ack]) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    for ack in acked {
        let version = last.entry(ack.ticket.clone()).or_insert(0);
        *version = (*version).max(ack.version);
    }
    last
}

/// What of the acknowledged writes the events table does not hold as
/// acknowledged, read from the file itself; also any event beyond a
/// ticket's last acknowledged version (a refused write appended after all).
fn lost_writes(db: &Path, acked: &[Ack], last: &BTreeMap<String, u64>) -> Vec<String> {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store");
    let mut at = connection
        .prepare("SELECT ticket_id, version FROM events WHERE position = ?1")
        .expect("prepare");
    let mut lost = Vec::new();
    for ack in acked {
        let stored: Option<(String, i64)> = at
            .query_row([ack.position as i64], |row| Ok((row.get(0)?, row.get(1)?)))
            .ok();
        if stored.as_ref() != Some(&(ack.ticket.clone(), ack.version as i64)) {
            lost.push(format!("{ack:?}: stored {stored:?}"));
        }
    }
    let mut versions = connection
        .prepare("SELECT ticket_id, max(version) FROM events GROUP BY ticket_id")
        .expect("prepare");
    let stored: BTreeMap<String, u64> = versions
        .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("read");
    if &stored != last {
        lost.push(format!(
            "the stored versions differ from the acknowledged ones: {:?}",
            stored
                .iter()
                .filter(|(ticket, version)| last.get(*ticket) != Some(version))
                .collect::<Vec<_>>()
        ));
    }
    lost
}
