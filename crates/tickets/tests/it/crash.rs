//! `ticketd` SIGKILLed again and again under HTTP write load, its in-process
//! projector with it. Afterwards, read from the store itself:
//!
//! - every acknowledged (2xx) write is there, at exactly the version its
//!   answer gave;
//! - every stored event is one a client sent, and every command is there
//!   whole or not at all (an unacknowledged command may have committed);
//! - `ticket-projector verify` finds the views equal to the events.
//!
//! Each client owns its tickets and changes them one command at a time, and
//! each command names itself (a unique agent and note), so the events of a
//! ticket can be matched to the commands sent for it, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Rng, StoredEvent, Ticketd, Workspace};

/// SIGKILLs per run (the issue asks for at least 20).
const KILLS: usize = 20;
/// Concurrent clients.
const CLIENTS: u64 = 6;
/// Commands sent to each ticket after it is opened.
const CHANGES_PER_TICKET: usize = 3;

/// One change sent for a ticket: an agent and a note (and, first, triage),
/// named so that its events can be told from any other command's.
#[derive(Debug)]
struct Change {
    triage: bool,
    agent: String,
    note: String,
    /// The version the answer gave, if one came (2xx).
    acknowledged: Option<u64>,
}

impl Change {
    /// The events this command appends, in order: (type, payload).
    fn events(&self) -> Vec<(&'static str, Value)> {
        let mut events = Vec::new();
        if self.triage {
            events.push(("TicketTriaged", json!({})));
        }
        events.push(("AgentAssigned", json!({ "agent": self.agent })));
        events.push(("NoteAdded", json!({ "text": self.note })));
        events
    }

    fn body(&self) -> Value {
        let mut body = json!({ "agent": self.agent, "note": self.note });
        if self.triage {
            body["status"] = json!("triaged");
        }
        body
    }
}

/// A ticket a client tried to open, and what it then sent for it.
#[derive(Debug)]
struct Attempt {
    subject: String,
    /// The ticket's id, if the create was acknowledged.
    id: Option<String>,
    changes: Vec<Change>,
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLog {
    attempts: Vec<Attempt>,
    /// Answers by status; 0 counts requests that got no answer.
    statuses: BTreeMap<u16, usize>,
}

/// Sends a request to whichever `ticketd` runs now. `None`: no answer (the
/// connection was refused or cut); the command may still have committed.
fn send(
    agent: &ureq::Agent,
    base: &Mutex<String>,
    method: &str,
    path: &str,
    body: &Value,
) -> Option<(u16, Value)> {
    let url = format!("{}{path}", base.lock().expect("base").clone());
    let request = match method {
        "POST" => agent.post(url),
        _ => agent.patch(url),
    };
    let mut response = request
        .header("content-type", "application/json")
        .send(body.to_string())
        .ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn client(number: u64, base: Arc<Mutex<String>>, running: Arc<AtomicBool>) -> ClientLog {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .max_idle_connections(0)
        .build()
        .into();
    let mut log = ClientLog::default();
    let answered = |log: &mut ClientLog, reply: &Option<(u16, Value)>| {
        let status = reply.as_ref().map_or(0, |(status, _)| *status);
        *log.statuses.entry(status).or_default() += 1;
        match status {
            // No answer, or the store was not ready: the outcome is unknown.
            0 | 503 => std::thread::sleep(Duration::from_millis(10)),
            200 | 201 => {}
            other => panic!("client {number}: unexpected {other}: {reply:?}"),
        }
    };
    let mut k = 0;
    while running.load(Ordering::SeqCst) {
        k += 1;
        let subject = format!("crash {number}-{k}");
        let body =
            json!({"customer": format!("client {number}"), "subject": subject, "message": "m"});
        let reply = send(&agent, &base, "POST", "/tickets", &body);
        answered(&mut log, &reply);
        let id = match &reply {
            Some((201, ticket)) => {
                assert_eq!(ticket["version"], 1, "{ticket}");
                Some(ticket["id"].as_str().expect("id").to_owned())
            }
            _ => None,
        };
        let mut attempt = Attempt {
            subject,
            id: id.clone(),
            changes: Vec::new(),
        };
        if let Some(id) = id {
            for j in 0..CHANGES_PER_TICKET {
                if !running.load(Ordering::SeqCst) {
                    break;
                }
                let mut change = Change {
                    triage: j == 0,
                    agent: format!("agent {number}-{k}-{j}"),
                    note: format!("note {number}-{k}-{j}"),
                    acknowledged: None,
                };
                let reply = send(
                    &agent,
                    &base,
                    "PATCH",
                    &format!("/tickets/{id}"),
                    &change.body(),
                );
                answered(&mut log, &reply);
                if let Some((200, ticket)) = &reply {
                    change.acknowledged = Some(ticket["version"].as_u64().expect("version"));
                }
                attempt.changes.push(change);
            }
        }
        log.attempts.push(attempt);
    }
    log
}

/// What the store's events say of the clients' writes.
#[derive(Debug, Default)]
struct Findings {
    /// Acknowledged writes found at their acknowledged version.
    acknowledged_checked: usize,
    /// Writes sent without an answer that committed anyway.
    unanswered_committed: usize,
    /// Writes sent without an answer that did not commit.
    unanswered_absent: usize,
}

/// Matches the store's events to the attempts; panics on a lost
/// acknowledged write, a wrong version, a partial command or a stray event.
fn check(attempts: &[&Attempt], stored: &[StoredEvent]) -> Findings {
    let mut findings = Findings::default();
    let mut streams: BTreeMap<&str, Vec<&StoredEvent>> = BTreeMap::new();
    for event in stored {
        streams.entry(&event.ticket).or_default().push(event);
    }
    let by_subject: HashMap<&str, &Attempt> =
        attempts.iter().map(|a| (a.subject.as_str(), *a)).collect();
    let mut opened: HashMap<&str, &str> = HashMap::new();
    for (ticket, events) in &streams {
        let first = events[0];
        assert_eq!(
            (first.version, first.event_type.as_str()),
            (1, "TicketOpened"),
            "ticket {ticket} does not start with its opening: {events:?}"
        );
        let subject = first.data["subject"].as_str().expect("subject");
        let attempt = by_subject
            .get(subject)
            .unwrap_or_else(|| panic!("ticket {ticket} was opened by no client: {first:?}"));
        if let Some(id) = &attempt.id {
            assert_eq!(id, ticket, "two tickets for the create of {subject:?}");
        }
        assert!(
            opened.insert(subject, ticket).is_none(),
            "one create of {subject:?} opened two tickets"
        );
        match attempt.id {
            Some(_) => findings.acknowledged_checked += 1,
            None => findings.unanswered_committed += 1,
        }

        // Walk the commands in the order they were sent: each is either
        // there whole, next, or not at all.
        let mut rest = &events[1..];
        let mut version = 1;
        for change in &attempt.changes {
            let expected = change.events();
            let here = rest.len() >= expected.len()
                && rest
                    .iter()
                    .zip(&expected)
                    .all(|(event, (kind, data))| event.event_type == *kind && event.data == *data);
            if here {
                rest = &rest[expected.len()..];
                version += expected.len() as u64;
                assert_eq!(
                    events[version as usize - 1].version,
                    version,
                    "ticket {ticket}: versions are not gap-free"
                );
            }
            match (change.acknowledged, here) {
                (Some(acknowledged), true) => {
                    assert_eq!(
                        acknowledged, version,
                        "ticket {ticket}: {change:?} was acknowledged at another version"
                    );
                    findings.acknowledged_checked += 1;
                }
                (Some(_), false) => panic!(
                    "ticket {ticket}: the acknowledged {change:?} is not in the store: {events:?}"
                ),
                (None, true) => findings.unanswered_committed += 1,
                (None, false) => findings.unanswered_absent += 1,
            }
        }
        assert!(
            rest.is_empty(),
            "ticket {ticket}: events no command sent (or part of one): {rest:?}"
        );
    }
    for attempt in attempts {
        if let Some(id) = &attempt.id {
            assert_eq!(
                opened.get(attempt.subject.as_str()),
                Some(&id.as_str()),
                "the acknowledged create of {:?} is not in the store",
                attempt.subject
            );
        } else if !opened.contains_key(attempt.subject.as_str()) {
            findings.unanswered_absent += 1;
        }
    }
    findings
}

fn sigkill_of_ticketd_under_write_load_loses_nothing_and_invents_nothing(ws: Workspace) {
    let base = Arc::new(Mutex::new(String::new()));
    let running = Arc::new(AtomicBool::new(true));
    // A short lease, so that each new process's projector takes over from
    // the killed one's soon and the views keep moving.
    let args = ["--projector-lease-ttl", "1s"];
    let mut ticketd = Ticketd::start(&ws, &args);
    *base.lock().expect("base") = ticketd.http.base.clone();

    let clients: Vec<_> = (1..=CLIENTS)
        .map(|number| {
            let (base, running) = (base.clone(), running.clone());
            std::thread::spawn(move || client(number, base, running))
        })
        .collect();

    // Up to 0.8 s of load per life (longer on the smoke server, whose
    // writes are slower), killed at a random point in it.
    let (least, spread) = if ws.is_smoke_server() {
        (400, 800)
    } else {
        (150, 650)
    };
    let mut rng = Rng(19);
    let started = Instant::now();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(least + rng.next(spread)));
        ticketd.process.kill();
        ticketd = Ticketd::start(&ws, &args);
        *base.lock().expect("base") = ticketd.http.base.clone();
    }
    std::thread::sleep(Duration::from_millis(least));
    running.store(false, Ordering::SeqCst);
    let logs: Vec<ClientLog> = clients
        .into_iter()
        .map(|client| client.join().expect("a client"))
        .collect();
    let load_took = started.elapsed();

    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for log in &logs {
        for (status, count) in &log.statuses {
            *statuses.entry(*status).or_default() += count;
        }
    }
    let acknowledged = statuses.get(&200).unwrap_or(&0) + statuses.get(&201).unwrap_or(&0);
    assert!(
        acknowledged >= KILLS,
        "too little load to judge: {acknowledged} acknowledged writes ({statuses:?})"
    );

    // The last process lives: its projector catches up, and the views must
    // equal a fold of the events.
    ws.wait_caught_up();
    let verify = ws.projector(&["verify"]);
    assert!(
        verify.status.success() && verify.stdout.contains("the views match"),
        "verify after the kills: {verify:?}"
    );

    let attempts: Vec<&Attempt> = logs.iter().flat_map(|log| &log.attempts).collect();
    let stored = ws.stored_events();
    let findings = check(&attempts, &stored);
    assert_eq!(findings.acknowledged_checked, acknowledged, "{findings:?}");
    eprintln!(
        "ticketd SIGKILLed {KILLS} times in {load_took:.1?} under {CLIENTS} clients: \
         answers {statuses:?} (0 = none); {} acknowledged writes checked at their versions, \
         lost 0; {} unanswered writes committed, {} did not; {} events stored, none stray; \
         verify: 0 differences",
        findings.acknowledged_checked,
        findings.unanswered_committed,
        findings.unanswered_absent,
        stored.len(),
    );
    drop(ticketd);
}

crate::on_every_backend!(sigkill_of_ticketd_under_write_load_loses_nothing_and_invents_nothing);
