//! The server's resource bounds, over raw TCP against the real `ticketd`: a
//! client that sends its request head too slowly or idles on a keep-alive
//! connection is disconnected, connections past the bound wait to be
//! accepted, requests past the in-flight bound and change streams past
//! theirs are refused at once with `Retry-After`. The bounds do not depend
//! on the store, so these run on SQLite.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{PATIENCE, Ticketd, Workspace};

/// The `host:port` of a running server.
fn address(ticketd: &Ticketd) -> String {
    ticketd
        .http
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn connect(ticketd: &Ticketd) -> TcpStream {
    let stream = TcpStream::connect(address(ticketd)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: tickets\r\n\r\n")
}

/// Reads until the end of a response head (or the connection's end), and
/// returns what was read.
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A whole small response: the head and a `Content-Length` body.
fn read_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).expect("a response head");
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the response body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the server closed the connection: a read ends (EOF or reset)
/// before `PATIENCE` instead of timing out.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buffer = [0_u8; 64];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// One GET on a fresh connection: the response head and body.
fn request(ticketd: &Ticketd, path: &str) -> (String, Value) {
    let mut stream = connect(ticketd);
    stream.write_all(get(path).as_bytes()).expect("write");
    let (head, body) = read_response(&mut stream);
    (head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Asserts a problem+json refusal with `status`, `type` and `Retry-After: 1`.
#[track_caller]
fn assert_refused(reply: &(String, Value), status: u16, kind: &str) {
    let (head, body) = reply;
    assert_eq!(status_of(head), status, "{head}{body}");
    assert_eq!(header(head, "retry-after"), Some("1"), "{head}");
    assert_eq!(
        header(head, "content-type"),
        Some("application/problem+json"),
        "{head}"
    );
    assert_eq!(body["type"], kind, "{body}");
    assert_eq!(body["status"], status, "{body}");
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}

#[test]
fn a_slow_request_head_and_an_idle_keep_alive_connection_are_closed() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start(&ws, &["--header-read-timeout", "1s"]);

    // Half a request head, then nothing: the server hangs up.
    let mut slow = connect(&ticketd);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: tick")
        .expect("write");
    assert!(
        closed_by_server(&mut slow),
        "a connection that never finished its request head stayed open"
    );

    // A whole request on a keep-alive connection, answered; then idle.
    let mut idle = connect(&ticketd);
    idle.write_all(get("/healthz").as_bytes()).expect("write");
    let (head, _) = read_response(&mut idle);
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(
        closed_by_server(&mut idle),
        "an idle keep-alive connection stayed open"
    );

    // The server itself is fine.
    assert_eq!(ticketd.http.get("/healthz").status, 200);
}

#[test]
fn connections_past_the_bound_wait_until_one_closes() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start(
        &ws,
        &["--max-connections", "2", "--header-read-timeout", "60s"],
    );
    let first = connect(&ticketd);
    let _second = connect(&ticketd);
    // Both slots are taken by idle connections: a third is not served.
    let mut third = connect(&ticketd);
    third
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    third.write_all(get("/healthz").as_bytes()).expect("write");
    let mut byte = [0_u8; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a connection past the bound was served: {early:?}"
    );

    // One closes: the waiting connection is accepted and its request answered.
    drop(first);
    third.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let (head, _) = read_response(&mut third);
    assert_eq!(status_of(&head), 200, "{head}");
}

#[test]
fn a_request_past_the_in_flight_bound_is_refused_at_once_with_retry_after() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start(&ws, &["--max-in-flight", "1", "--read-wait-max", "10s"]);

    // A read waiting for a position the dashboard will not reach holds the
    // one slot for the read-wait bound. Until the server has taken it up, a
    // probe may still get the slot (and answer at once); if the waiting read
    // arrives while a probe holds the slot, it is the one refused (it has an
    // answer already), and the test sends another.
    let deadline = std::time::Instant::now() + PATIENCE;
    let (mut waiting, refused) = 'attempt: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiting read never held the slot"
        );
        let mut waiting = connect(&ticketd);
        waiting
            .write_all(get("/dashboard?min_position=1000000").as_bytes())
            .expect("write");
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            let reply = request(&ticketd, "/dashboard");
            if status_of(&reply.0) != 200 {
                break 'attempt (waiting, reply);
            }
            waiting.set_nonblocking(true).expect("non-blocking");
            let answered = waiting.peek(&mut [0_u8; 1]).is_ok_and(|read| read > 0);
            waiting.set_nonblocking(false).expect("blocking");
            if answered {
                continue 'attempt;
            }
        }
    };
    assert_refused(&refused, 503, "/problems/overloaded");
    // Liveness is never shed.
    assert_eq!(ticketd.http.get("/healthz").status, 200);

    // The waiting read is answered (stale), and the slot is free again.
    waiting.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let (head, _) = read_response(&mut waiting);
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(header(&head, "x-read-stale").is_some(), "{head}");
    assert_eq!(ticketd.http.get("/dashboard").status, 200);
}

#[test]
fn change_streams_past_the_bounds_are_refused_and_a_closed_one_frees_its_place() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start(
        &ws,
        &["--max-streams", "2", "--max-streams-per-client", "1"],
    );
    let open = |ticketd: &Ticketd| {
        let mut stream = connect(ticketd);
        stream
            .write_all(get("/tickets/stream").as_bytes())
            .expect("write");
        let head = read_head(&mut stream).expect("a head");
        (stream, head)
    };

    let (first, head) = open(&ticketd);
    assert_eq!(status_of(&head), 200, "{head}");
    // Every connection here comes from one address: one client.
    assert_refused(
        &request(&ticketd, "/tickets/stream"),
        429,
        "/problems/too-many-streams",
    );

    // Closing the stream gives its place back (once the server notices).
    drop(first);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_second, head) = open(&ticketd);
        if status_of(&head) == 200 {
            break;
        }
        assert_eq!(status_of(&head), 429, "{head}");
        assert!(
            std::time::Instant::now() < deadline,
            "a closed stream kept its place"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn change_streams_past_the_server_bound_are_503() {
    let ws = Workspace::sqlite();
    let ticketd = Ticketd::start(
        &ws,
        &["--max-streams", "1", "--max-streams-per-client", "5"],
    );
    let mut first = connect(&ticketd);
    first
        .write_all(get("/tickets/stream").as_bytes())
        .expect("write");
    let head = read_head(&mut first).expect("a head");
    assert_eq!(status_of(&head), 200, "{head}");

    assert_refused(
        &request(&ticketd, "/tickets/stream"),
        503,
        "/problems/overloaded",
    );
}
