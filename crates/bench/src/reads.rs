//! The `reads` workload: `ticketd` started on a seeded store whose views are
//! current, then list pages (limit 50) of every filter × sort × order, ticket
//! details and the dashboard, one request at a time.
//!
//! Client-side latency is the full HTTP round trip. Server-side latency is
//! ticketd's own: each request carries an `X-Request-Id` naming its query
//! shape, and ticketd's JSON log line for it holds `latency_ms` (arrival to
//! response ready). Also measured: the time from spawn to a 200 from
//! `/readyz`, and ticketd's memory when idle after that and after the reads.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::history::Seeded;
use crate::http::Client;
use crate::procs::{Binaries, Memory, Ticketd};
use crate::stats::{Latencies, Summary};

/// The list filters measured: (name, query), values that exist in the seed.
pub const FILTERS: [(&str, &str); 5] = [
    ("none", ""),
    ("status", "status=open&"),
    ("agent", "agent=agent-07&"),
    ("customer", "customer=customer-0042&"),
    ("status+agent", "status=triaged&agent=agent-07&"),
];
pub const SORTS: [&str; 2] = ["created_at", "updated_at"];
pub const ORDERS: [&str; 2] = ["desc", "asc"];

/// One list query shape: its name and the filter values it uses.
#[derive(Debug, Clone)]
pub struct ListShape {
    pub name: String,
    pub query: String,
    pub status: Option<&'static str>,
    pub agent: Option<&'static str>,
    pub customer: Option<&'static str>,
    pub sort: &'static str,
    pub order: &'static str,
}

/// Every list shape, in report order.
pub fn list_shapes() -> Vec<ListShape> {
    let mut shapes = Vec::new();
    for (filter, query) in FILTERS {
        for sort in SORTS {
            for order in ORDERS {
                let value = |key: &str| {
                    query
                        .split('&')
                        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                };
                shapes.push(ListShape {
                    name: format!("list {filter} by {sort} {order}"),
                    query: format!("/tickets?{query}sort={sort}&order={order}&limit=50"),
                    status: value("status"),
                    agent: value("agent"),
                    customer: value("customer"),
                    sort,
                    order,
                });
            }
        }
    }
    shapes
}

#[derive(Debug, Clone, Serialize)]
pub struct ShapeResult {
    pub name: String,
    pub client: Summary,
    pub server: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReadsResult {
    pub tickets: u64,
    pub events: u64,
    /// Spawn to the first 200 from `/readyz`.
    pub ready_ms: f64,
    /// One second after ready, before any query.
    pub idle: Memory,
    /// After the reads.
    pub after: Memory,
    pub shapes: Vec<ShapeResult>,
}

impl ReadsResult {
    pub fn shape(&self, name: &str) -> Option<&ShapeResult> {
        self.shapes.iter().find(|s| s.name == name)
    }

    pub fn lists(&self) -> impl Iterator<Item = &ShapeResult> {
        self.shapes.iter().filter(|s| s.name.starts_with("list "))
    }
}

/// Samples per shape are `samples`; a few more go first, unmeasured, to warm
/// the caches as a serving process's would be.
const WARM_UP: usize = 5;

pub async fn reads(
    binaries: &Binaries,
    seeded: &Seeded,
    log: &Path,
    samples: usize,
) -> anyhow::Result<ReadsResult> {
    let ticketd = Ticketd::start(binaries, &seeded.store.to_string(), log, &[])?;
    let ready = ticketd.wait_ready().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = ticketd.memory();

    let mut client = Client::connect(ticketd.addr).await?;
    let mut queries: Vec<(String, Vec<String>)> = list_shapes()
        .into_iter()
        .map(|shape| (shape.name, vec![shape.query]))
        .collect();
    if seeded.sample_ids.is_empty() {
        bail!("the seeded store has no ticket ids to read");
    }
    let details = seeded
        .sample_ids
        .iter()
        .map(|id| format!("/tickets/{id}"))
        .collect();
    queries.push(("detail".to_owned(), details));
    queries.push(("dashboard".to_owned(), vec!["/dashboard".to_owned()]));

    let mut client_side: Vec<(String, Latencies)> = Vec::new();
    for (name, paths) in &queries {
        let mut latencies = Latencies::default();
        for i in 0..WARM_UP + samples {
            let path = &paths[i % paths.len()];
            let request_id = format!("{}~{i}", name.replace(' ', "_"));
            let started = Instant::now();
            let reply = client.get(path, Some(&request_id)).await?;
            let elapsed = started.elapsed();
            if reply.status != 200 {
                bail!("GET {path} answered {}", reply.status);
            }
            if i >= WARM_UP {
                latencies.record(elapsed);
            }
        }
        client_side.push((name.clone(), latencies));
    }
    let after = ticketd.memory();
    drop(client);
    drop(ticketd);

    let server_side = server_latencies(log, WARM_UP)?;
    let shapes = client_side
        .into_iter()
        .map(|(name, latencies)| ShapeResult {
            server: server_side
                .get(&name.replace(' ', "_"))
                .map(Latencies::summary)
                .unwrap_or_default(),
            client: latencies.summary(),
            name,
        })
        .collect();
    Ok(ReadsResult {
        tickets: seeded.tickets,
        events: seeded.events,
        ready_ms: ready.as_secs_f64() * 1000.0,
        idle,
        after,
        shapes,
    })
}

/// Server-side latencies per shape from ticketd's JSON log: the `request
/// completed` lines whose request id is `<shape>~<i>`, warm-up skipped.
pub fn server_latencies(log: &Path, warm_up: usize) -> anyhow::Result<HashMap<String, Latencies>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut by_shape: HashMap<String, Latencies> = HashMap::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        if fields["message"] != "request completed" {
            continue;
        }
        let (Some(id), Some(latency)) =
            (fields["request_id"].as_str(), fields["latency_ms"].as_f64())
        else {
            continue;
        };
        let Some((shape, i)) = id.rsplit_once('~') else {
            continue;
        };
        if i.parse::<usize>().is_ok_and(|i| i >= warm_up) {
            by_shape
                .entry(shape.to_owned())
                .or_default()
                .record_millis(latency);
        }
    }
    Ok(by_shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_sort_and_order() {
        let shapes = list_shapes();
        assert_eq!(shapes.len(), FILTERS.len() * 4);
        let agent = shapes
            .iter()
            .find(|s| s.name == "list status+agent by updated_at asc")
            .expect("shape");
        assert_eq!(
            agent.query,
            "/tickets?status=triaged&agent=agent-07&sort=updated_at&order=asc&limit=50"
        );
        assert_eq!(
            (agent.status, agent.agent, agent.customer),
            (Some("triaged"), Some("agent-07"), None)
        );
    }

    #[test]
    fn server_side_latencies_come_from_the_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("ticketd.log");
        let line = |id: &str, ms: f64| {
            format!(
                r#"{{"level":"INFO","fields":{{"message":"request completed","route":"/dashboard","latency_ms":{ms},"request_id":"{id}"}}}}"#
            )
        };
        let text = [
            line("dashboard~0", 9.0),
            line("dashboard~1", 0.5),
            line("dashboard~2", 1.5),
            "not json".to_owned(),
            line("someone-else", 3.0),
        ]
        .join("\n");
        std::fs::write(&log, text).expect("write");
        let found = server_latencies(&log, 1).expect("parse");
        let dashboard = found.get("dashboard").expect("dashboard").summary();
        assert_eq!(dashboard.count, 2);
        assert!((dashboard.max_ms - 1.5).abs() < 0.01, "{dashboard:?}");
        assert_eq!(found.len(), 1);
    }
}
