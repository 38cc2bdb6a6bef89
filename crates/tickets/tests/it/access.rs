//! Access control, black-box: tokens made with `ticketd token create`, a
//! `ticketd --auth token` over real HTTP, and every cell of the role table
//! (customer, agent, admin, metrics; plus no token and a bad one), on every
//! backend. Also: the actor is the token's name whatever `X-Actor` says, a
//! revoked token is refused within a second, `--auth off` is refused on a
//! non-loopback address unless `--insecure-no-auth` is given, and JWTs from
//! an identity provider (signed with the auth crate's fixture keys) carry
//! their role and customer.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Http, PATIENCE, Reply, Ticketd, Workspace, read_model_reaches};

crate::on_every_backend!(
    every_cell_of_the_role_table_holds,
    a_customer_stream_carries_only_its_own_tickets,
    the_actor_is_the_token_and_a_revoked_token_is_refused_within_a_second,
);

/// Creates a token with the CLI and returns its secret (stdout's last line).
#[track_caller]
fn token(ws: &Workspace, role: &str, name: &str, customer: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--role", role, "--name", name];
    if let Some(customer) = customer {
        args.extend(["--customer", customer]);
    }
    let ran = ws.ticketd(&args);
    assert!(ran.status.success(), "{ran:?}");
    let secret = ran.stdout.lines().last().expect("a secret").to_owned();
    assert!(secret.starts_with("tkt_"), "{ran:?}");
    secret
}

/// The clients of one test: one per role, and one without a token.
struct Clients {
    anonymous: Http,
    bad: Http,
    acme: Http,
    globex: Http,
    agent: Http,
    admin: Http,
    metrics: Http,
    /// The secrets behind the clients, by role, for raw requests.
    secrets: std::collections::HashMap<&'static str, String>,
}

fn clients(ws: &Workspace, ticketd: &Ticketd) -> Clients {
    let http = &ticketd.http;
    let secrets = std::collections::HashMap::from([
        ("acme", token(ws, "customer", "acme-web", Some("acme"))),
        (
            "globex",
            token(ws, "customer", "globex-web", Some("globex")),
        ),
        ("agent", token(ws, "agent", "ana", None)),
        ("admin", token(ws, "admin", "root", None)),
        ("metrics", token(ws, "metrics", "prometheus", None)),
    ]);
    Clients {
        anonymous: Http::new(http.base.clone()),
        bad: http.with_bearer("tkt_not-a-token"),
        acme: http.with_bearer(&secrets["acme"]),
        globex: http.with_bearer(&secrets["globex"]),
        agent: http.with_bearer(&secrets["agent"]),
        admin: http.with_bearer(&secrets["admin"]),
        metrics: http.with_bearer(&secrets["metrics"]),
        secrets,
    }
}

fn open_body(customer: &str) -> Value {
    json!({"customer": customer, "subject": "s", "message": "m"})
}

#[track_caller]
fn assert_unauthorized(reply: &Reply) {
    reply.assert_problem(401, None);
    assert!(
        reply
            .headers
            .get("www-authenticate")
            .is_some_and(|challenge| challenge.starts_with("Bearer")),
        "{reply:?}"
    );
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|row| row["id"].as_str().expect("id").to_owned())
        .collect()
}

fn every_cell_of_the_role_table_holds(ws: Workspace) {
    // A first admin token before the server starts, as the README sets up.
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let c = clients(&ws, &ticketd);

    // Public routes need nothing.
    assert_eq!(c.anonymous.get("/healthz").status, 200);
    assert_eq!(c.anonymous.get("/openapi.json").status, 200);

    // No token, or a bad one: 401 everywhere else, and nothing written.
    for client in [&c.anonymous, &c.bad] {
        assert_unauthorized(&client.post("/tickets", &open_body("acme")));
        for path in ["/tickets", "/dashboard", "/metrics", "/readyz"] {
            assert_unauthorized(&client.get(path));
        }
    }

    // POST /tickets: customers for their own customer only; agent and admin
    // for anyone; metrics not at all.
    let acme_ticket = c.acme.post("/tickets", &open_body("acme"));
    assert_eq!(acme_ticket.status, 201, "{acme_ticket:?}");
    c.acme
        .post("/tickets", &open_body("globex"))
        .assert_problem(403, Some("customer"));
    let globex_ticket = c.agent.post("/tickets", &open_body("globex"));
    assert_eq!(globex_ticket.status, 201, "{globex_ticket:?}");
    assert_eq!(c.admin.post("/tickets", &open_body("acme")).status, 201);
    c.metrics
        .post("/tickets", &open_body("acme"))
        .assert_problem(403, None);
    let acme_id = acme_ticket.body["id"].as_str().expect("id").to_owned();
    let globex_id = globex_ticket.body["id"].as_str().expect("id").to_owned();
    read_model_reaches(&c.admin, &acme_ticket.body);
    read_model_reaches(&c.admin, &globex_ticket.body);

    // GET /tickets: a customer's own tickets only; everything for staff.
    let acme_list = c.acme.get("/tickets?min_position=1000000");
    assert_eq!(acme_list.status, 200, "{acme_list:?}");
    let listed = ids(&c.acme.get("/tickets"));
    assert!(
        listed.contains(&acme_id) && !listed.contains(&globex_id),
        "{listed:?}"
    );
    c.acme
        .get("/tickets?customer=globex")
        .assert_problem(403, Some("customer"));
    for staff in [&c.agent, &c.admin] {
        let listed = ids(&staff.get("/tickets"));
        assert!(listed.contains(&acme_id) && listed.contains(&globex_id));
    }
    c.metrics.get("/tickets").assert_problem(403, None);

    // GET /tickets/{id} and /events: another customer's ticket is a 404.
    for suffix in ["", "/events", "?as_of_version=1"] {
        assert_eq!(
            c.acme.get(&format!("/tickets/{acme_id}{suffix}")).status,
            200
        );
        c.acme
            .get(&format!("/tickets/{globex_id}{suffix}"))
            .assert_problem(404, None);
        assert_eq!(
            c.globex
                .get(&format!("/tickets/{globex_id}{suffix}"))
                .status,
            200
        );
        for staff in [&c.agent, &c.admin] {
            assert_eq!(
                staff.get(&format!("/tickets/{globex_id}{suffix}")).status,
                200
            );
        }
        c.metrics
            .get(&format!("/tickets/{acme_id}{suffix}"))
            .assert_problem(403, None);
    }

    // PATCH: a customer adds notes to its own tickets only, and changes
    // nothing else; staff change anything; metrics nothing.
    let noted = c
        .acme
        .patch(&format!("/tickets/{acme_id}"), &json!({"note": "hello"}));
    assert_eq!(noted.status, 200, "{noted:?}");
    c.acme
        .patch(&format!("/tickets/{globex_id}"), &json!({"note": "hi"}))
        .assert_problem(404, None);
    c.acme
        .patch(&format!("/tickets/{acme_id}"), &json!({"status": "closed"}))
        .assert_problem(403, Some("status"));
    c.acme
        .patch(
            &format!("/tickets/{acme_id}"),
            &json!({"agent": "me", "note": "x"}),
        )
        .assert_problem(403, Some("agent"));
    let triaged = c.agent.patch(
        &format!("/tickets/{acme_id}"),
        &json!({"status": "triaged", "agent": "ana"}),
    );
    assert_eq!(triaged.status, 200, "{triaged:?}");
    let closed = c.admin.patch(
        &format!("/tickets/{globex_id}"),
        &json!({"status": "closed"}),
    );
    assert_eq!(closed.status, 200, "{closed:?}");
    c.metrics
        .patch(&format!("/tickets/{acme_id}"), &json!({"note": "x"}))
        .assert_problem(403, None);
    // The refused writes wrote nothing: the acme ticket holds one note and
    // the two accepted changes (open, note, triage + assign).
    let events = c.admin.get(&format!("/tickets/{acme_id}/events"));
    assert_eq!(
        events.body["events"].as_array().map(Vec::len),
        Some(4),
        "{events:?}"
    );

    // GET /dashboard: staff only.
    for customer in [&c.acme, &c.globex, &c.metrics] {
        customer.get("/dashboard").assert_problem(403, None);
    }
    for staff in [&c.agent, &c.admin] {
        assert_eq!(staff.get("/dashboard").status, 200);
    }

    // /metrics and /readyz: admin and the metrics role.
    for path in ["/metrics", "/readyz"] {
        for refused in [&c.acme, &c.agent] {
            refused.get(path).assert_problem(403, None);
        }
        for allowed in [&c.admin, &c.metrics] {
            let reply = allowed.get(path);
            assert!(matches!(reply.status, 200 | 503), "{path}: {reply:?}");
        }
    }

    // GET /tickets/stream: everyone but metrics may open one (the customer's
    // carries only its own tickets; see the next test).
    for allowed in ["acme", "agent", "admin"] {
        let (status, _) = open_stream(&ticketd, Some(&c.secrets[allowed]));
        assert_eq!(status, 200, "{allowed}");
    }
    assert_eq!(open_stream(&ticketd, Some(&c.secrets["metrics"])).0, 403);
    assert_eq!(open_stream(&ticketd, None).0, 401);
}

/// Opens `GET /tickets/stream?after=0` over raw TCP; the status and the
/// reader positioned after the head.
fn open_stream(ticketd: &Ticketd, bearer: Option<&str>) -> (u16, BufReader<TcpStream>) {
    let address = ticketd.http.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let authorization = bearer
        .map(|secret| format!("Authorization: Bearer {secret}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /tickets/stream?after=0 HTTP/1.1\r\nHost: tickets\r\n{authorization}\r\n"
    )
    .expect("write");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (status, reader)
}

fn a_customer_stream_carries_only_its_own_tickets(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let agent = ticketd.http.with_bearer(&token(&ws, "agent", "ana", None));
    let acme_secret = token(&ws, "customer", "acme-web", Some("acme"));

    // Another customer's ticket first, then the customer's own: a stream in
    // position order that shows the second without the first filtered.
    let globex = agent.post("/tickets", &open_body("globex")).body;
    let acme = agent.post("/tickets", &open_body("acme")).body;
    let (status, mut reader) = open_stream(&ticketd, Some(&acme_secret));
    assert_eq!(status, 200);
    let acme_id = acme["id"].as_str().expect("id");
    let globex_id = globex["id"].as_str().expect("id");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !seen.iter().any(|data: &String| data.contains(acme_id)) {
        assert!(
            Instant::now() < deadline,
            "no change for acme's ticket: {seen:?}"
        );
        let mut line = String::new();
        reader.read_line(&mut line).expect("a stream line");
        if let Some(data) = line.strip_prefix("data:") {
            seen.push(data.trim().to_owned());
        }
    }
    assert!(
        !seen.iter().any(|data| data.contains(globex_id)),
        "a customer's stream carried another customer's ticket: {seen:?}"
    );
}

fn the_actor_is_the_token_and_a_revoked_token_is_refused_within_a_second(ws: Workspace) {
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let agent_secret = token(&ws, "agent", "ana", None);
    let agent = ticketd.http.with_bearer(&agent_secret);
    let admin = ticketd.http.with_bearer(&token(&ws, "admin", "root", None));

    // X-Actor is ignored: the events record the token's name. Sent raw, as
    // the harness's client sets no such header.
    let body = open_body("acme").to_string();
    let address = ticketd.http.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "POST /tickets HTTP/1.1\r\nHost: tickets\r\nAuthorization: Bearer {}\r\n\
         X-Actor: mallory\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        agent_secret,
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).expect("a response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let opened: Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("a body")).expect("JSON");
    let id = opened["id"].as_str().expect("id");
    let events = admin.get(&format!("/tickets/{id}/events"));
    assert_eq!(
        events.body["events"][0]["metadata"]["actor"], "ana",
        "{events:?}"
    );

    // The token list shows it, without a secret; revoking it takes effect
    // on the running server within a second.
    let listed = ws.ticketd(&["token", "list"]);
    assert!(
        listed.stdout.contains("ana") && !listed.stdout.contains("tkt_"),
        "{listed:?}"
    );
    let revoked = ws.ticketd(&["token", "revoke", "ana"]);
    assert!(revoked.status.success(), "{revoked:?}");
    let deadline = Instant::now() + Duration::from_secs(1) + PATIENCE;
    loop {
        let reply = agent.get("/tickets");
        if reply.status == 401 {
            assert_unauthorized(&reply);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a revoked token kept working: {reply:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Names are never reused; revoking twice says so.
    let again = ws.ticketd(&["token", "create", "--role", "agent", "--name", "ana"]);
    assert!(
        !again.status.success() && again.stderr.contains("already exists"),
        "{again:?}"
    );
    assert!(!ws.ticketd(&["token", "revoke", "ana"]).status.success());
    // The admin token still works.
    assert_eq!(admin.get("/tickets").status, 200);
}

#[test]
fn auth_off_on_a_public_address_needs_insecure_no_auth() {
    let ws = Workspace::sqlite();
    let store = ws.store_url();
    let refused = std::process::Command::new(crate::harness::TICKETD)
        .args(["--listen", "0.0.0.0:0", "--auth", "off", "--store", &store])
        .env_remove("TICKETS_AUTH")
        .env_remove("TICKETS_INSECURE_NO_AUTH")
        .output()
        .expect("run ticketd");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");

    // With the flag it serves, unauthenticated; on a public address without
    // --auth it defaults to tokens.
    let open = Ticketd::start_in(
        ws.dir.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--auth",
            "off",
            "--insecure-no-auth",
            "--store",
            &store,
        ],
        &ws.log("open"),
    );
    let open_base = open.http.base.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(Http::new(open_base).get("/tickets").status, 200);
    let guarded = Ticketd::start_in(
        ws.dir.path(),
        &["--listen", "0.0.0.0:0", "--store", &store],
        &ws.log("guarded"),
    );
    let guarded_base = guarded.http.base.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(Http::new(guarded_base).get("/tickets").status, 401);
}

/// A JWT signed with the auth crate's fixture RSA key (in its fixture JWKS).
fn jwt(claims: &Value) -> String {
    let key_file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../auth/tests/fixtures/rsa-private.pem"
    );
    let pem = std::fs::read(key_file).expect("the fixture key");
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).expect("a PEM key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("test-rsa".to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

#[test]
fn jwts_from_the_identity_provider_carry_their_role_and_customer() {
    let ws = Workspace::sqlite();
    let jwks = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../auth/tests/fixtures/jwks.json"
    );
    let issuer = "https://id.example.test";
    let ticketd = Ticketd::start(
        &ws,
        &[
            "--auth",
            "token",
            "--jwt-jwks",
            jwks,
            "--jwt-issuer",
            issuer,
            "--jwt-audience",
            "tickets",
        ],
    );
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 300;
    let claims = |sub: &str, role: &str, customer: Option<&str>| {
        let mut claims =
            json!({"iss": issuer, "aud": "tickets", "sub": sub, "role": role, "exp": exp});
        if let Some(customer) = customer {
            claims["customer"] = json!(customer);
        }
        claims
    };
    let customer = ticketd
        .http
        .with_bearer(&jwt(&claims("web-7", "customer", Some("acme"))));
    let agent = ticketd
        .http
        .with_bearer(&jwt(&claims("maria", "agent", None)));

    let opened = customer.post("/tickets", &open_body("acme"));
    assert_eq!(opened.status, 201, "{opened:?}");
    customer
        .post("/tickets", &open_body("globex"))
        .assert_problem(403, Some("customer"));
    customer.get("/dashboard").assert_problem(403, None);
    assert_eq!(agent.get("/dashboard").status, 200);
    let id = opened.body["id"].as_str().expect("id");
    let events = agent.get(&format!("/tickets/{id}/events"));
    assert_eq!(
        events.body["events"][0]["metadata"]["actor"], "web-7",
        "{events:?}"
    );

    // Another issuer, and a tampered token, are refused; API tokens still work.
    let mut foreign = claims("maria", "agent", None);
    foreign["iss"] = json!("https://evil.test");
    assert_unauthorized(&ticketd.http.with_bearer(&jwt(&foreign)).get("/tickets"));
    let mut tampered = jwt(&claims("maria", "agent", None));
    tampered.pop();
    assert_unauthorized(&ticketd.http.with_bearer(&tampered).get("/tickets"));
    let admin = ticketd.http.with_bearer(&token(&ws, "admin", "root", None));
    assert_eq!(admin.get("/metrics").status, 200);
}
