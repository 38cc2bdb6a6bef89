//! The `commands` workload over HTTP: the ticket workload (open, then triage,
//! assign an agent, add a note, close: five commands, five events) against
//! a `ticketd` on a fresh store.
//!
//! - Closed loop: C workers, each with its own connection, run tickets back
//!   to back for the duration; throughput and per-command latency.
//! - Open loop: commands start at a fixed rate whatever the answers do, and a
//!   watcher in this process polls the live checkpoints of the three
//!   projections every millisecond; each write's lag is the time from its
//!   acknowledgement to the first poll that finds every projection at or past
//!   its `X-Event-Position` (0 when they were there before the answer came).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use readmodel::{Projection, Target, ViewReader};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::http::Client;
use crate::procs::{Binaries, Memory, Ticketd};
use crate::seed;
use crate::stats::{Latencies, Summary, per_second};

#[derive(Debug, Clone, Serialize)]
pub struct ClosedLoop {
    pub concurrency: usize,
    pub commands: u64,
    pub errors: u64,
    pub seconds: f64,
    pub commands_per_second: f64,
    pub latency: Summary,
    pub ticketd: Memory,
    /// Tickets opened, and the distinct customers who opened them (ten
    /// tickets each: a data key made for one opening in ten).
    pub tickets: u64,
    pub customers: u64,
    /// ticketd's CPU time (user + system, all threads, its projector's
    /// included) over the run, per acknowledged command.
    pub ticketd_cpu_us_per_command: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenLoop {
    pub target_events_per_second: u64,
    pub events_per_second: f64,
    pub commands: u64,
    pub errors: u64,
    pub seconds: f64,
    pub connections: usize,
    pub latency: Summary,
    pub lag: Summary,
    /// Writes the read model had not shown 10 s after the run.
    pub never_seen: u64,
    /// The lag's distribution for the plot: (ms, fraction at or below).
    pub lag_cdf: Vec<(f64, f64)>,
    pub ticketd: Memory,
}

/// The customer who opens ticket `n`: ten consecutive tickets per customer,
/// so one opening in ten makes the customer's data key, and the others find
/// it (in the keyring's cache or the key store) as a returning customer's
/// ticket does.
pub(crate) fn customer_index(n: u64) -> u64 {
    n / seed::TICKETS_PER_CUSTOMER
}

/// The body of each command of ticket `n`, in order.
pub(crate) fn ticket_commands(n: u64) -> [(Method, String); 5] {
    let script = |v: serde_json::Value| v.to_string();
    [
        (
            Method::POST,
            script(serde_json::json!({
                "customer": format!("customer-{:04}", customer_index(n)),
                "subject": format!("Benchmark ticket {n}"),
                "message": "The printer on the third floor is on fire again. Please help.",
            })),
        ),
        (
            Method::PATCH,
            script(serde_json::json!({"status": "triaged"})),
        ),
        (
            Method::PATCH,
            script(serde_json::json!({"agent": seed::agent(n)})),
        ),
        (
            Method::PATCH,
            script(serde_json::json!({"note": "Called back; a technician is on the way."})),
        ),
        (
            Method::PATCH,
            script(serde_json::json!({"status": "closed"})),
        ),
    ]
}

/// One worker's tallies.
#[derive(Debug, Default)]
struct Tally {
    latencies: Latencies,
    commands: u64,
    errors: u64,
    /// The tickets opened.
    opened: Vec<u64>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.commands += other.commands;
        self.errors += other.errors;
        self.opened.extend(other.opened);
    }

    /// The distinct customers of the tickets opened.
    fn customers(&self) -> u64 {
        let customers: std::collections::HashSet<u64> =
            self.opened.iter().map(|&n| customer_index(n)).collect();
        customers.len() as u64
    }
}

/// Runs tickets on `client` until `deadline`, calling `gate` before each
/// command (the open loop's pacing) and `acked` with each write's position.
async fn worker(
    mut client: Client,
    first_ticket: u64,
    stride: u64,
    deadline: Instant,
    gate: Option<Arc<Semaphore>>,
    acked: impl Fn(u64, Instant),
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut n = first_ticket;
    'tickets: while Instant::now() < deadline {
        let mut path = "/tickets".to_owned();
        for (method, body) in ticket_commands(n) {
            if let Some(gate) = &gate {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, gate.acquire()).await {
                    Ok(Ok(permit)) => permit.forget(),
                    _ => break 'tickets,
                }
            } else if Instant::now() >= deadline {
                break 'tickets;
            }
            let started = Instant::now();
            let reply = client.send_json(method.clone(), &path, body).await?;
            let done = Instant::now();
            tally.latencies.record(done - started);
            tally.commands += 1;
            if !(200..300).contains(&reply.status) {
                tally.errors += 1;
                continue 'tickets;
            }
            if let Some(position) = reply.event_position {
                acked(position, done);
            }
            if method == Method::POST {
                tally.opened.push(n);
                match reply.location {
                    Some(location) => path = location,
                    None => bail!("a create answered without Location"),
                }
            }
        }
        n += stride;
    }
    Ok(tally)
}

async fn connect_all(addr: std::net::SocketAddr, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(addr).await?);
    }
    Ok(clients)
}

/// The closed loop at one concurrency on a fresh store.
pub async fn closed_loop(
    binaries: &Binaries,
    store: &str,
    log: &std::path::Path,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<ClosedLoop> {
    let ticketd = Ticketd::start(binaries, store, log, &[])?;
    ticketd.wait_ready().await?;
    let clients = connect_all(ticketd.addr, concurrency).await?;
    let cpu_before = ticketd.cpu_seconds();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for (k, client) in clients.into_iter().enumerate() {
        workers.spawn(worker(
            client,
            k as u64,
            concurrency as u64,
            deadline,
            None,
            |_, _| {},
        ));
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.add(done.context("joining a worker")??);
    }
    let elapsed = started.elapsed();
    let cpu = ticketd.cpu_seconds() - cpu_before;
    let acknowledged = tally.commands - tally.errors;
    Ok(ClosedLoop {
        concurrency,
        commands: tally.commands,
        errors: tally.errors,
        seconds: elapsed.as_secs_f64(),
        commands_per_second: per_second(acknowledged, elapsed),
        latency: tally.latencies.summary(),
        ticketd: ticketd.memory(),
        tickets: tally.opened.len() as u64,
        customers: tally.customers(),
        ticketd_cpu_us_per_command: if acknowledged == 0 {
            0.0
        } else {
            cpu * 1e6 / acknowledged as f64
        },
    })
}

/// Writes acknowledged and not yet seen in the read model, by position.
#[derive(Debug, Default)]
struct Pending {
    /// The lowest live checkpoint of the three projections at the last poll.
    visible: u64,
    waiting: BinaryHeap<Reverse<(u64, Instant)>>,
    lags: Latencies,
}

impl Pending {
    fn acked(&mut self, position: u64, at: Instant) {
        if position <= self.visible {
            self.lags.record(Duration::ZERO);
        } else {
            self.waiting.push(Reverse((position, at)));
        }
    }

    fn seen_up_to(&mut self, visible: u64, now: Instant) {
        self.visible = self.visible.max(visible);
        while let Some(Reverse((position, at))) = self.waiting.peek().copied() {
            if position > self.visible {
                break;
            }
            self.waiting.pop();
            self.lags.record(now.saturating_duration_since(at));
        }
    }
}

/// The lowest live checkpoint: every view shows the events up to it.
async fn visible(views: &dyn ViewReader) -> anyhow::Result<u64> {
    let mut lowest = u64::MAX;
    for projection in Projection::ALL {
        lowest = lowest.min(views.checkpoint(projection, Target::Live).await?);
    }
    Ok(lowest)
}

/// The open loop at `rate` commands (= events) per second on a fresh store.
pub async fn open_loop(
    binaries: &Binaries,
    store: &tickets::StoreUrl,
    log: &std::path::Path,
    rate: u64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<OpenLoop> {
    let ticketd = Ticketd::start(binaries, &store.to_string(), log, &[])?;
    ticketd.wait_ready().await?;
    let views: Arc<dyn ViewReader> = tickets::Backend::open(store).await?.views;
    let pending = Arc::new(Mutex::new(Pending::default()));
    let stop_watching = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let pending = pending.clone();
        let stop = stop_watching.clone();
        tokio::spawn(async move {
            loop {
                let checkpoint = visible(&*views).await?;
                let now = Instant::now();
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .seen_up_to(checkpoint, now);
                tokio::select! {
                    () = stop.notified() => return anyhow::Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        })
    };

    let gate = Arc::new(Semaphore::new(0));
    let clients = connect_all(ticketd.addr, connections).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let pacer = {
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut released = 0u64;
            while Instant::now() < deadline {
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                if due > released {
                    gate.add_permits(usize::try_from(due - released).unwrap_or(usize::MAX));
                    released = due;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let mut workers = tokio::task::JoinSet::new();
    for (k, client) in clients.into_iter().enumerate() {
        let pending = pending.clone();
        workers.spawn(worker(
            client,
            k as u64,
            connections as u64,
            deadline,
            Some(gate.clone()),
            move |position, at| {
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .acked(position, at);
            },
        ));
    }
    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.add(done.context("joining a worker")??);
    }
    let elapsed = started.elapsed();
    pacer.abort();

    // Give the read model time to show the last writes.
    let patience = Instant::now() + Duration::from_secs(10);
    while Instant::now() < patience {
        let empty = pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
            .is_empty();
        if empty {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_watching.notify_one();
    watcher.await.context("joining the watcher")??;
    let pending = pending.lock().unwrap_or_else(|e| e.into_inner());
    Ok(OpenLoop {
        target_events_per_second: rate,
        events_per_second: per_second(tally.commands - tally.errors, elapsed),
        commands: tally.commands,
        errors: tally.errors,
        seconds: elapsed.as_secs_f64(),
        connections,
        latency: tally.latencies.summary(),
        lag: pending.lags.summary(),
        never_seen: pending.waiting.len() as u64,
        lag_cdf: pending.lags.cdf(200),
        ticketd: ticketd.memory(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_ack_and_zero_when_already_visible() {
        let mut pending = Pending::default();
        let t0 = Instant::now();
        pending.acked(3, t0);
        pending.acked(1, t0);
        pending.seen_up_to(2, t0 + Duration::from_millis(4));
        assert_eq!(pending.lags.count(), 1);
        assert_eq!(pending.waiting.len(), 1);
        // Already visible when acknowledged.
        pending.acked(2, t0);
        assert_eq!(pending.lags.count(), 2);
        pending.seen_up_to(5, t0 + Duration::from_millis(10));
        assert!(pending.waiting.is_empty());
        let summary = pending.lags.summary();
        assert!((summary.max_ms - 10.0).abs() < 0.02, "{summary:?}");
        assert_eq!(pending.lags.quantile_ms(0.0), 0.001);
    }

    #[test]
    fn a_ticket_is_five_commands_ending_closed() {
        let commands = ticket_commands(7);
        assert_eq!(commands[0].0, Method::POST);
        assert!(commands[2].1.contains("agent-07"));
        assert!(commands[4].1.contains("closed"));
        assert!(ticket_commands(9)[0].1.contains("customer-0000"));
        assert!(ticket_commands(10)[0].1.contains("customer-0001"));
    }
}
