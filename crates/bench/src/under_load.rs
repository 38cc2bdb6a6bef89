//! The `rebuild-under-load` workload: `ticket-projector rebuild` of every
//! projection on a seeded store while `ticketd` (its in-process projector
//! on) takes a steady open-loop write load over HTTP.
//!
//! The store's views are brought up to date first (a rebuild before the
//! measured one, as a running service's would be), so the measured rebuild
//! empties three populated shadow slots and fills them again, exactly what
//! an operator's rebuild does. Commands start at a fixed rate whatever the
//! answers do, each from its scheduled time: a command that waits for a free
//! connection counts that wait in its latency (no coordinated omission).
//! The load runs from a moment before the rebuild to a moment after it;
//! latency and counts are those of the commands scheduled while the
//! rebuild ran, and a failure anywhere counts (a transport error, a non-2xx
//! answer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;
use serde::Serialize;
use tickets::StoreUrl;
use tokio::sync::{Mutex, mpsc};

use crate::commands::ticket_commands;
use crate::http::Client;
use crate::procs::{Binaries, Memory, Ticketd, run_projector};
use crate::stats::{Latencies, Summary, per_second};

/// Load before the rebuild starts, and after it ends.
pub const MARGIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize)]
pub struct UnderLoadResult {
    pub tickets: u64,
    /// Events in the store when the rebuild started.
    pub events: u64,
    /// Commands per second offered.
    pub rate: u64,
    pub connections: usize,
    /// Commands scheduled while the rebuild ran.
    pub offered: u64,
    pub acknowledged: u64,
    pub failed: u64,
    /// Failures over the whole load, margins included.
    pub failed_in_all: u64,
    /// Commands scheduled while the rebuild ran, each from its scheduled
    /// time to its answer.
    pub latency: Summary,
    /// Commands in the margins before and after it, for comparison.
    pub latency_outside: Summary,
    /// `ticket-projector rebuild` (every projection), spawn to exit.
    pub rebuild_seconds: f64,
    /// `events` over `rebuild_seconds`, for the three projections together.
    pub rebuild_events_per_second: f64,
    pub rebuild_peak_rss_mb: f64,
    /// What `ticket-projector rebuild` printed: a line per projection.
    pub said: String,
    pub ticketd: Memory,
}

/// One command's outcome.
#[derive(Debug, Clone, Copy)]
struct Done {
    scheduled: Instant,
    latency: Duration,
    ok: bool,
}

/// Rebuilds every projection of `store` (seeded with `tickets` tickets,
/// views current) while `rate` commands per second arrive on `connections`.
pub async fn rebuild_under_load(
    binaries: &Binaries,
    store: &StoreUrl,
    tickets: u64,
    rate: u64,
    connections: usize,
    logs: &std::path::Path,
) -> anyhow::Result<UnderLoadResult> {
    let url = store.to_string();
    let ticketd = Ticketd::start(binaries, &url, &logs.join("ticketd-under-load.log"), &[])?;
    ticketd.wait_ready().await?;
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::connect(ticketd.addr).await?);
    }

    // The pacer hands out scheduled times; a free worker takes the next.
    let (schedule, due) = mpsc::unbounded_channel::<Instant>();
    let due = Arc::new(Mutex::new(due));
    let (record, mut outcomes) = mpsc::unbounded_channel::<Done>();
    let mut workers = tokio::task::JoinSet::new();
    for (k, client) in clients.into_iter().enumerate() {
        workers.spawn(worker(
            client,
            // Ticket numbers of their own, past the seeded ones.
            tickets + k as u64,
            connections as u64,
            due.clone(),
            record.clone(),
        ));
    }
    drop(record);
    let stop = Arc::new(tokio::sync::Notify::new());
    let pacer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
            let mut sent = 0u64;
            loop {
                let next = started + interval.mul_f64(sent as f64);
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep_until(next.into()) => {}
                }
                if schedule.send(next).is_err() {
                    return;
                }
                sent += 1;
            }
        })
    };

    tokio::time::sleep(MARGIN).await;
    let events = tickets::Backend::open(store).await?.events.head().await?;
    let rebuild_started = Instant::now();
    let (log, out) = (logs.join("rebuild-under-load.log"), binaries.clone());
    let finished = tokio::task::spawn_blocking(move || {
        run_projector(
            &out,
            &["rebuild", "--store", &url, "--log-format", "json"],
            &log,
        )
    })
    .await
    .context("joining the rebuild")?
    .context("ticket-projector rebuild under load")?;
    let rebuild_ended = Instant::now();
    tokio::time::sleep(MARGIN).await;
    stop.notify_one();
    pacer.await.context("joining the pacer")?;
    // Commands already due still run; then the workers find no more.
    while let Some(done) = workers.join_next().await {
        done.context("joining a worker")?;
    }

    let (mut during, mut outside) = (Latencies::default(), Latencies::default());
    let (mut offered, mut acknowledged, mut failed, mut failed_in_all) = (0, 0, 0, 0);
    while let Some(done) = outcomes.recv().await {
        failed_in_all += u64::from(!done.ok);
        if done.scheduled >= rebuild_started && done.scheduled <= rebuild_ended {
            offered += 1;
            if done.ok {
                acknowledged += 1;
            } else {
                failed += 1;
            }
            during.record(done.latency);
        } else {
            outside.record(done.latency);
        }
    }
    let elapsed = rebuild_ended - rebuild_started;
    Ok(UnderLoadResult {
        tickets,
        events,
        rate,
        connections,
        offered,
        acknowledged,
        failed,
        failed_in_all,
        latency: during.summary(),
        latency_outside: outside.summary(),
        rebuild_seconds: elapsed.as_secs_f64(),
        rebuild_events_per_second: per_second(events, elapsed),
        rebuild_peak_rss_mb: finished.peak_rss_mb,
        said: finished.stdout.trim().to_owned(),
        ticketd: ticketd.memory(),
    })
}

/// Runs tickets (open, then four changes) on `client`, one command per
/// scheduled time taken from `due`, until the schedule ends.
async fn worker(
    mut client: Client,
    first_ticket: u64,
    stride: u64,
    due: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    record: mpsc::UnboundedSender<Done>,
) {
    let mut n = first_ticket;
    loop {
        let mut path = "/tickets".to_owned();
        for (method, body) in ticket_commands(n) {
            let Some(scheduled) = due.lock().await.recv().await else {
                return;
            };
            let reply = client.send_json(method.clone(), &path, body).await;
            let latency = scheduled.elapsed();
            let (ok, location) = match reply {
                Ok(reply) => ((200..300).contains(&reply.status), reply.location),
                Err(_) => {
                    // The connection broke: a failure, and a new connection.
                    if let Ok(fresh) = Client::connect(client.addr()).await {
                        client = fresh;
                    }
                    (false, None)
                }
            };
            let _ = record.send(Done {
                scheduled,
                latency,
                ok,
            });
            if !ok {
                break;
            }
            if method == Method::POST {
                match location {
                    Some(location) => path = location,
                    None => break,
                }
            }
        }
        n += stride;
    }
}
