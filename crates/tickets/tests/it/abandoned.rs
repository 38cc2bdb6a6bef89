//! Clients that drop their connections mid-request at random: in the
//! request head, in the body, just after the last byte, or while the server
//! works on it. Whatever a dropped request committed must reach the views
//! like any other write: `verify` finds no event without its view rows, and
//! the writes of clients that stayed are all there.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Http, Rng, Ticketd, Workspace, read_model_reaches};

/// Where a request is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cut {
    /// Part of the request head sent.
    InHead,
    /// The head and part of the body.
    InBody,
    /// The whole request, then closed at once.
    AfterLastByte,
    /// The whole request, closed a few milliseconds later: while the server
    /// appends or answers.
    WhileServed,
}

const CUTS: [Cut; 4] = [
    Cut::InHead,
    Cut::InBody,
    Cut::AfterLastByte,
    Cut::WhileServed,
];

/// Sends `method path` with a JSON body over a raw connection and closes it
/// at `cut`, never reading the answer.
fn abandon(address: &str, method: &str, path: &str, body: &Value, cut: Cut, rng: &mut Rng) {
    let body = body.to_string();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let Ok(mut stream) = TcpStream::connect(address) else {
        return;
    };
    let bytes: Vec<u8> = [head.as_bytes(), body.as_bytes()].concat();
    let upto = match cut {
        Cut::InHead => 1 + rng.next(head.len() as u64 - 1) as usize,
        Cut::InBody => head.len() + rng.next(body.len() as u64) as usize,
        Cut::AfterLastByte | Cut::WhileServed => bytes.len(),
    };
    // A write may fail if the server has already closed its side: that is
    // one more way for a client to go away.
    let _ = stream.write_all(&bytes[..upto]);
    if cut == Cut::WhileServed {
        std::thread::sleep(Duration::from_micros(rng.next(5_000)));
    }
    drop(stream);
}

fn dropped_connections_leave_no_event_without_its_view_rows(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &[]);
    let http = &ticketd.http;
    let address = http
        .base
        .strip_prefix("http://")
        .expect("an http:// base")
        .to_owned();
    // Tickets for the dropped PATCHes to change. On jongodb, more of them,
    // changed by fewer clients at once: its commits can undo a concurrent
    // commit's writes (docs/mongodb.md), which shows as a view row behind
    // its checkpoint when a few hot rows are rewritten in every batch.
    let (targets, droppers) = if ws.is_smoke_server() {
        eprintln!("smoke server: 2 dropping clients over 32 tickets");
        (32, 2)
    } else {
        (8, 4)
    };
    let targets: Vec<String> = (0..targets)
        .map(|n| {
            http.create(&format!("target {n}"), "subject", "message")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();

    // Clients that stay: their acknowledged writes must all reach the views.
    let running = Arc::new(AtomicBool::new(true));
    let truth = Arc::new(Mutex::new(Vec::<Value>::new()));
    let stayers: Vec<_> = (0..2)
        .map(|n| {
            let (base, running, truth) = (http.base.clone(), running.clone(), truth.clone());
            std::thread::spawn(move || {
                let http = Http::new(base);
                let mut k = 0;
                while running.load(Ordering::SeqCst) {
                    k += 1;
                    let ticket = http.create(&format!("stayer {n}"), &format!("s {k}"), "m");
                    let path = format!("/tickets/{}", ticket["id"].as_str().expect("id"));
                    let reply = http.patch(&path, &json!({"note": format!("n {k}")}));
                    assert_eq!(reply.status, 200, "{reply:?}");
                    truth.lock().expect("truth").push(reply.body);
                }
            })
        })
        .collect();

    let per_cut = ws.load(150);
    let droppers: Vec<_> = (0..droppers)
        .map(|n| {
            let (address, targets) = (address.clone(), targets.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(n + 31);
                for k in 0..per_cut * CUTS.len() / droppers as usize {
                    let cut = CUTS[rng.next(CUTS.len() as u64) as usize];
                    if rng.next(2) == 0 {
                        let body = json!({"customer": format!("dropper {n}"), "subject": format!("{cut:?} {k}"), "message": "m"});
                        abandon(&address, "POST", "/tickets", &body, cut, &mut rng);
                    } else {
                        let target = &targets[rng.next(targets.len() as u64) as usize];
                        let body = json!({"note": format!("dropped {cut:?} {n}-{k}"), "agent": format!("a{}", rng.next(3))});
                        abandon(&address, "PATCH", &format!("/tickets/{target}"), &body, cut, &mut rng);
                    }
                }
                per_cut * CUTS.len() / droppers as usize
            })
        })
        .collect();
    let dropped: usize = droppers
        .into_iter()
        .map(|dropper| dropper.join().expect("a dropper"))
        .sum();
    running.store(false, Ordering::SeqCst);
    for stayer in stayers {
        stayer.join().expect("a stayer");
    }

    assert_eq!(http.get("/healthz").status, 200, "ticketd still serves");
    let truth = truth.lock().expect("truth");
    for ticket in truth.iter() {
        assert_eq!(&read_model_reaches(http, ticket), ticket);
    }
    ws.wait_caught_up();
    let verify = ws.projector(&["verify"]);
    assert!(
        verify.status.success() && verify.stdout.contains("the views match"),
        "verify after dropped requests: {verify:?}"
    );
    let events = ws.event_count();
    // What the dropped requests committed, by where they were cut: the
    // subject of a create and the note of a change name the cut.
    let mut committed = std::collections::BTreeMap::<Cut, usize>::new();
    for event in ws.stored_events() {
        let named = match event.event_type.as_str() {
            "TicketOpened"
                if event.data["customer"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("dropper")) =>
            {
                event.data["subject"].as_str().map(str::to_owned)
            }
            "NoteAdded" => event.data["text"]
                .as_str()
                .and_then(|text| text.strip_prefix("dropped "))
                .map(str::to_owned),
            _ => None,
        };
        if let Some(named) = named {
            let cut = CUTS
                .into_iter()
                .find(|cut| named.starts_with(&format!("{cut:?} ")))
                .unwrap_or_else(|| panic!("an event of no dropped request: {event:?}"));
            *committed.entry(cut).or_default() += 1;
        }
    }
    eprintln!(
        "{dropped} requests dropped mid-way, cut at random among {CUTS:?}; committed by cut: \
         {committed:?}; {} writes of staying clients acknowledged and seen in the views; \
         {events} events in all; verify: 0 differences",
        truth.len() * 2,
    );
    // A request the server never read whole must never become an event.
    for cut in [Cut::InHead, Cut::InBody] {
        assert_eq!(
            committed.get(&cut),
            None,
            "a {cut:?} request committed: {committed:?}"
        );
    }
}

crate::on_every_backend!(dropped_connections_leave_no_event_without_its_view_rows);
