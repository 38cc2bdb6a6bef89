//! Holding a slot's lease: the holder's name, and the heartbeat that keeps a
//! lease alive (and reports the holder's state) while work goes on.

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use readmodel::{Fence, LeaseStore, RunState, ViewError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A lease holder's name: `hostname:pid:random`. The random part tells two
/// runners of one process (or a restarted process with a reused pid) apart.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    // std's RandomState is seeded from the OS: random enough for a name.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{host}:{}:{:08x}", std::process::id(), random as u32)
}

/// What the holder last said it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    state: RunState,
    last_error: Option<String>,
}

/// A lease that a background task keeps alive with a heartbeat every third of
/// its TTL. When a heartbeat finds the lease gone, [`Held::lost`] is cancelled
/// and the holder must stop writing.
#[derive(Debug)]
pub(crate) struct Held {
    pub fence: Fence,
    views: Arc<dyn LeaseStore>,
    report: Arc<Mutex<Report>>,
    beat_now: Arc<Notify>,
    lost: CancellationToken,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Held {
    pub fn start(views: Arc<dyn LeaseStore>, fence: Fence, ttl: Duration, state: RunState) -> Self {
        let report = Arc::new(Mutex::new(Report {
            state,
            last_error: None,
        }));
        let beat_now = Arc::new(Notify::new());
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat(
            views.clone(),
            fence.clone(),
            ttl,
            report.clone(),
            beat_now.clone(),
            lost.clone(),
            stop.clone(),
        ));
        Held {
            fence,
            views,
            report,
            beat_now,
            lost,
            stop,
            task,
        }
    }

    /// Records the holder's state for the next heartbeat; an error appearing,
    /// changing or clearing, or a stop, is reported at once.
    pub fn set(&self, state: RunState, last_error: Option<String>) {
        let next = Report { state, last_error };
        let urgent = {
            let Ok(mut report) = self.report.lock() else {
                return;
            };
            let urgent = report.last_error != next.last_error
                || (report.state != next.state
                    && (report.state == RunState::Stopped || next.state == RunState::Stopped));
            *report = next;
            urgent
        };
        if urgent {
            self.beat_now.notify_one();
        }
    }

    /// Cancelled when a heartbeat found the lease taken over.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Stops the heartbeat and gives the lease up, so a standby takes over at once.
    pub async fn release(self) {
        let fence = self.fence.clone();
        let views = self.views.clone();
        self.stop_heartbeat().await;
        if let Err(error) = views.release_lease(&fence).await {
            tracing::warn!(%error, projection = %fence.projection, target = fence.target.name(), "could not release the lease; it frees itself when it expires");
        }
    }

    /// Stops the heartbeat without touching the lease (it was lost).
    pub async fn stop_heartbeat(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn heartbeat(
    views: Arc<dyn LeaseStore>,
    fence: Fence,
    ttl: Duration,
    report: Arc<Mutex<Report>>,
    beat_now: Arc<Notify>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let period = ttl / 3;
    let mut failing = false;
    loop {
        let Ok(current) = report.lock().map(|r| r.clone()) else {
            return;
        };
        match views
            .heartbeat(&fence, ttl, current.state, current.last_error.as_deref())
            .await
        {
            Ok(()) => failing = false,
            Err(ViewError::LeaseLost { .. }) => {
                tracing::warn!(projection = %fence.projection, target = fence.target.name(), holder = %fence.holder, "heartbeat: the lease was taken over");
                lost.cancel();
                return;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, projection = %fence.projection, "heartbeat failed; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = beat_now.notified() => {}
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_names_are_host_pid_random_and_differ() {
        let a = holder_name();
        let b = holder_name();
        let parts: Vec<&str> = a.split(':').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(parts[2].len(), 8);
        assert_ne!(a, b);
    }
}
