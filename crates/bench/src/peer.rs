//! The peer of the `commands` workload: the same five ticket commands run by
//! the Python `eventsourcing` library on its SQLite recorder, one command per
//! transaction, on the same machine in the same run, for the ratio the issue
//! states its target as (commands/s of ticketd at 64 connections over the
//! peer's).
//!
//! The script (`bench/peer/eventsourcing_peer.py`) is compiled into
//! ticket-bench and written to the work folder, so the binary runs it from
//! anywhere; the Python interpreter is `--peer-python` (one that can import
//! `eventsourcing`: `pip install eventsourcing`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::stats::per_second;

const SCRIPT: &str = include_str!("../../../bench/peer/eventsourcing_peer.py");

/// The peer's figures, as its script printed them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerResult {
    pub commands: u64,
    pub errors: u64,
    pub seconds: f64,
    #[serde(default)]
    pub commands_per_second: f64,
    /// SQLite's `synchronous` and `journal_mode` on the peer's connection:
    /// its durability, to set beside ticketd's (`FULL`, `wal`).
    pub synchronous: String,
    pub journal_mode: String,
    /// The `eventsourcing` version.
    pub version: String,
}

/// Why the peer did not run, or what it measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    Ran(PeerResult),
    Skipped(String),
}

/// Whether `python` can import `eventsourcing`: `Err` says why not.
pub fn check(python: &Path, work: &Path) -> anyhow::Result<()> {
    let script = write_script(work)?;
    let out = Command::new(python)
        .arg(&script)
        .args(["--db", "unused", "--seconds", "0", "--check"])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} cannot run the peer: {} (pip install eventsourcing, or pass --peer-python)",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the peer for `duration` on a fresh SQLite file at `db`.
pub fn run(
    python: &Path,
    work: &Path,
    db: &Path,
    duration: Duration,
) -> anyhow::Result<PeerResult> {
    let script = write_script(work)?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let out = Command::new(python)
        .arg(&script)
        .arg("--db")
        .arg(db)
        .arg("--seconds")
        .arg(duration.as_secs_f64().to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the peer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut result: PeerResult = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "reading the peer's figures: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    result.commands_per_second = per_second(
        result.commands - result.errors,
        Duration::from_secs_f64(result.seconds),
    );
    Ok(result)
}

fn write_script(work: &Path) -> anyhow::Result<std::path::PathBuf> {
    let path = work.join("eventsourcing_peer.py");
    if !path.exists() {
        std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}
