//! The `naive` workload: the tutorial's compute-on-read design on the same
//! tickets, for the ratio against our read models.
//!
//! One `tickets` table (primary key only) holds each ticket's current state,
//! notes as a JSON array. The dashboard counts with `GROUP BY status` over
//! every row; a list page filters, sorts and pages the whole table, and
//! computes each row's preview, `has_note` and last-note preview while
//! reading. It runs in this process on its own SQLite file, so its times have
//! no HTTP in them; the ratio compares them with ticketd's server-side times.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::reads::{ListShape, list_shapes};
use crate::seed::{self, Clock};
use crate::stats::{Latencies, Summary};

const CHUNK: u64 = 10_000;
/// A slow shape stops sampling after this long (at least `MIN_SAMPLES`).
const BUDGET_PER_SHAPE: Duration = Duration::from_secs(2);
const MIN_SAMPLES: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct NaiveResult {
    pub tickets: u64,
    pub shapes: Vec<NaiveShape>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NaiveShape {
    pub name: String,
    pub latency: Summary,
}

impl NaiveResult {
    pub fn shape(&self, name: &str) -> Option<&NaiveShape> {
        self.shapes.iter().find(|s| s.name == name)
    }
}

/// Fills a naive table with the seed's `tickets` and times every query shape.
pub fn naive(file: &Path, tickets: u64, samples: usize) -> anyhow::Result<NaiveResult> {
    let _ = std::fs::remove_file(file);
    let mut db = Connection::open(file).with_context(|| format!("opening {}", file.display()))?;
    fill(&mut db, tickets)?;
    let mut shapes = Vec::new();
    for shape in list_shapes() {
        let latency = time(samples, || list_page(&db, &shape).map(|rows| rows.len()))?;
        shapes.push(NaiveShape {
            name: shape.name,
            latency,
        });
    }
    shapes.push(NaiveShape {
        name: "dashboard".to_owned(),
        latency: time(samples, || dashboard(&db).map(|counts| counts.len()))?,
    });
    drop(db);
    let _ = std::fs::remove_file(file);
    Ok(NaiveResult { tickets, shapes })
}

fn time(
    samples: usize,
    mut query: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<Summary> {
    query()?; // warm-up: the page cache, the statement
    let mut latencies = Latencies::default();
    let budget = Instant::now() + BUDGET_PER_SHAPE;
    for i in 0..samples {
        if i >= MIN_SAMPLES && Instant::now() > budget {
            break;
        }
        let started = Instant::now();
        std::hint::black_box(query()?);
        latencies.record(started.elapsed());
    }
    Ok(latencies.summary())
}

fn fill(db: &mut Connection, tickets: u64) -> anyhow::Result<()> {
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE tickets (
             id         TEXT PRIMARY KEY,
             customer   TEXT NOT NULL,
             subject    TEXT NOT NULL,
             message    TEXT NOT NULL,
             status     TEXT NOT NULL,
             agent      TEXT,
             notes      TEXT NOT NULL,
             created_at TEXT NOT NULL,
             updated_at TEXT NOT NULL
         );",
    )?;
    let tx = db.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO tickets (id, customer, subject, message, status, agent, notes, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut clock = Clock::default();
        let time =
            |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut from = 0;
        while from < tickets {
            let to = (from + CHUNK).min(tickets);
            for ticket in seed::chunk(from, to, &mut clock).tickets {
                let notes: Vec<serde_json::Value> = ticket
                    .notes
                    .iter()
                    .map(|(text, at)| serde_json::json!({"text": text, "added_at": time(*at)}))
                    .collect();
                insert.execute(params![
                    ticket.id.to_string(),
                    ticket.customer,
                    ticket.subject,
                    ticket.message,
                    ticket.status,
                    ticket.agent,
                    serde_json::Value::Array(notes).to_string(),
                    time(ticket.created_at),
                    time(ticket.updated_at),
                ])?;
            }
            from = to;
        }
    }
    tx.commit()?;
    Ok(())
}

/// The tutorial's dashboard: count every ticket, now.
fn dashboard(db: &Connection) -> anyhow::Result<Vec<(String, i64)>> {
    let mut statement =
        db.prepare_cached("SELECT status, count(*) FROM tickets GROUP BY status")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A list row as the API shows it, computed from the ticket at read time.
#[derive(Debug)]
#[allow(dead_code)] // read only through black_box: the point is computing it
struct Row {
    id: String,
    customer: String,
    subject: String,
    status: String,
    agent: Option<String>,
    preview: String,
    has_note: bool,
    last_note_preview: Option<String>,
    created_at: String,
    updated_at: String,
}

/// The tutorial's list page: filter, sort and take 50 over the whole table,
/// previews computed per row read.
fn list_page(db: &Connection, shape: &ListShape) -> anyhow::Result<Vec<Row>> {
    let order = if shape.order == "asc" { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT id, customer, subject, status, agent, message, notes, created_at, updated_at
         FROM tickets
         WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR agent = ?2)
           AND (?3 IS NULL OR customer = ?3)
         ORDER BY {sort} {order}, id {order}
         LIMIT 50",
        sort = shape.sort,
    );
    let mut statement = db.prepare_cached(&sql)?;
    let rows = statement.query_map(params![shape.status, shape.agent, shape.customer], |row| {
        let message: String = row.get(5)?;
        let notes: String = row.get(6)?;
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            message,
            notes,
            row.get::<_, String>(7)?,
            row.get::<_, String>(8)?,
        ))
    })?;
    let mut page = Vec::new();
    for row in rows {
        let (id, customer, subject, status, agent, message, notes, created_at, updated_at) = row?;
        let notes: Vec<serde_json::Value> = serde_json::from_str(&notes)?;
        let last_note_preview = notes
            .last()
            .and_then(|note| note["text"].as_str())
            .map(readmodel::preview);
        page.push(Row {
            id,
            customer,
            subject,
            status,
            agent,
            preview: readmodel::preview(&message),
            has_note: !notes.is_empty(),
            last_note_preview,
            created_at,
            updated_at,
        });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naive_design_answers_like_the_seed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut db = Connection::open(dir.path().join("naive.db")).expect("open");
        fill(&mut db, 40).expect("fill");
        let counts = dashboard(&db).expect("dashboard");
        assert_eq!(
            counts,
            [
                ("closed".to_owned(), 10),
                ("open".to_owned(), 10),
                ("triaged".to_owned(), 20)
            ]
        );
        let shapes = list_shapes();
        let open = shapes
            .iter()
            .find(|s| s.name == "list status by created_at desc")
            .expect("shape");
        let page = list_page(&db, open).expect("page");
        assert_eq!(page.len(), 10);
        assert!(page.iter().all(|r| r.status == "open"));
        assert!(page.windows(2).all(|w| w[0].created_at > w[1].created_at));
        assert!(page.iter().all(|r| r.preview.chars().count() <= 100));
    }
}
