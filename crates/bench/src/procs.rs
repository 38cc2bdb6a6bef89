//! The real binaries as child processes: finding them, starting `ticketd` on
//! a store and learning its address, running `ticket-projector` commands, and
//! reading a process's memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::http::Client;

/// How long a process may take to print its address or become ready.
const START_PATIENCE: Duration = Duration::from_secs(120);

/// Where `ticketd` and `ticket-projector` are.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub ticketd: PathBuf,
    pub projector: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, or (without one) beside this executable: cargo
    /// puts every binary of the workspace in the same target folder.
    pub fn locate(dir: Option<&Path>) -> anyhow::Result<Binaries> {
        let dir = match dir {
            Some(dir) => dir.to_owned(),
            None => std::env::current_exe()
                .context("finding this executable")?
                .parent()
                .context("this executable has no folder")?
                .to_owned(),
        };
        let binaries = Binaries {
            ticketd: dir.join("ticketd"),
            projector: dir.join("ticket-projector"),
        };
        for path in [&binaries.ticketd, &binaries.projector] {
            if !path.is_file() {
                bail!(
                    "{} is missing: build the binaries first (`cargo build --release -p tickets`) or pass --bin-dir",
                    path.display()
                );
            }
        }
        Ok(binaries)
    }

    /// The cargo profile the binaries were built with, from their folder's
    /// name (`release`, `debug`, …); debug figures mean nothing.
    pub fn profile(&self) -> String {
        self.ticketd.parent().and_then(Path::file_name).map_or_else(
            || "unknown".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// A running `ticketd`, killed when dropped.
#[derive(Debug)]
pub struct Ticketd {
    child: Child,
    pub addr: SocketAddr,
    /// From spawn to the bound address on stdout.
    pub started_in: Duration,
    spawned: Instant,
    pub log: PathBuf,
}

impl Ticketd {
    /// Starts `ticketd --listen 127.0.0.1:0 --store STORE EXTRA…`, logging
    /// JSON lines to `log`, and waits for its address.
    pub fn start(
        binaries: &Binaries,
        store: &str,
        log: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Ticketd> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let spawned = Instant::now();
        let mut child = Command::new(&binaries.ticketd)
            .args(["--listen", "127.0.0.1:0", "--store", store])
            .args(["--log-format", "json"])
            .args(extra)
            .env_remove("TICKETS_STORE")
            .env_remove("TICKETS_LISTEN")
            .env_remove("TICKETS_NO_PROJECTOR")
            .env_remove("TICKETS_PROJECTOR_BATCH")
            .env_remove("TICKETS_PROJECTOR_MAX_LINGER")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binaries.ticketd.display()))?;
        let stdout = child.stdout.take().context("ticketd's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let mut process = Ticketd {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            started_in: Duration::ZERO,
            spawned,
            log: log.to_owned(),
        };
        let Ok(address) = rx.recv_timeout(START_PATIENCE) else {
            bail!(
                "ticketd did not print its address; its log ({}):\n{}",
                log.display(),
                tail(log)
            );
        };
        process.addr = address
            .parse()
            .with_context(|| format!("ticketd's address `{address}`"))?;
        process.started_in = spawned.elapsed();
        Ok(process)
    }

    /// Polls `/readyz` until it answers 200; returns the time from spawn.
    pub async fn wait_ready(&self) -> anyhow::Result<Duration> {
        let mut client = Client::connect(self.addr).await?;
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if client.get("/readyz", None).await?.status == 200 {
                return Ok(self.spawned.elapsed());
            }
            if Instant::now() > deadline {
                bail!("ticketd was not ready within {START_PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// The CPU time ticketd has used so far, all threads, user + system.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

/// A process's CPU time so far (user + system, every thread), in seconds,
/// from `/proc/PID/stat`; 0 where `/proc` says nothing.
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| parse_cpu_seconds(&stat))
        .unwrap_or_default()
}

/// `utime` and `stime` (fields 14 and 15, counted after the parenthesised
/// command name, which may hold spaces), in clock ticks of 1/100 s: the
/// `USER_HZ` Linux reports them in on every architecture.
fn parse_cpu_seconds(stat: &str) -> f64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => 0.0,
    }
}

impl Drop for Ticketd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A process's resident memory, from `/proc/PID/status`: now (`VmRSS`) and
/// the peak so far (`VmHWM`), in MiB. Zero where `/proc` says nothing (not
/// Linux, or the process is gone).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|status| Memory::parse(&status))
            .unwrap_or_default()
    }

    pub fn of_self() -> Memory {
        Memory::of(std::process::id())
    }

    /// Reads the two lines, `VmRSS:   12345 kB`.
    pub fn parse(status: &str) -> Memory {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        Memory {
            rss_mb: field("VmRSS:"),
            peak_rss_mb: field("VmHWM:"),
        }
    }
}

/// A finished `ticket-projector` command: its output, wall time and peak
/// memory.
#[derive(Debug)]
pub struct Finished {
    pub stdout: String,
    pub elapsed: Duration,
    pub peak_rss_mb: f64,
}

/// Runs `ticket-projector ARGS`, sampling its peak memory every 20 ms
/// (`VmHWM` only grows, so the last sample before exit misses at most the
/// growth of its last 20 ms), and fails with its log when it fails.
pub fn run_projector(binaries: &Binaries, args: &[&str], log: &Path) -> anyhow::Result<Finished> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let stdout_path = log.with_extension("out");
    let stdout_file = std::fs::File::create(&stdout_path)
        .with_context(|| format!("creating {}", stdout_path.display()))?;
    let started = Instant::now();
    let mut child = Command::new(&binaries.projector)
        .args(args)
        .env_remove("TICKETS_STORE")
        .env_remove("TICKETS_PROJECTOR_BATCH")
        .env_remove("TICKETS_REBUILD_BATCH")
        .env_remove("TICKETS_LEASE_TTL")
        .env_remove("TICKETS_REBUILD_MAX_RATE")
        .stdin(Stdio::null())
        .stdout(stdout_file)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", binaries.projector.display()))?;
    let mut peak = 0.0_f64;
    let status = loop {
        peak = peak.max(Memory::of(child.id()).peak_rss_mb);
        if let Some(status) = child.try_wait().context("waiting for ticket-projector")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    if !status.success() {
        bail!(
            "ticket-projector {} failed ({status}); its log:\n{}",
            args.join(" "),
            tail(log)
        );
    }
    Ok(Finished {
        stdout,
        elapsed,
        peak_rss_mb: peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_from_proc_status() {
        let status = "Name:\tticketd\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n";
        assert_eq!(
            Memory::parse(status),
            Memory {
                rss_mb: 10.0,
                peak_rss_mb: 20.0
            }
        );
        assert_eq!(Memory::parse("nothing"), Memory::default());
    }

    #[test]
    fn cpu_time_from_proc_stat() {
        let stat = "4242 (ticket d) S 1 4242 4242 0 -1 4194304 900 0 0 0 250 75 0 0 20 0 9 0 \
                    100 1000000 2000 18446744073709551615";
        assert!((parse_cpu_seconds(stat) - 3.25).abs() < 1e-9);
        assert_eq!(parse_cpu_seconds("garbage"), 0.0);
        assert!(cpu_seconds(std::process::id()) >= 0.0);
    }
}
