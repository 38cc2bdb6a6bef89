//! The web console in a real browser: headless Chromium, driven through
//! chromedriver (W3C WebDriver: a handful of JSON calls over HTTP, made with
//! ureq here), against the real `ticketd` with `--auth token`.
//!
//! Chromium and chromedriver come from the system (Debian: `apt-get install
//! chromium chromium-driver`; `.ci/run` installs them). Without them the
//! test fails in CI (`CI` set) and is skipped with a reason elsewhere.
//!
//! The screenshots of the three screens (and of the ops screen's dead
//! letters) land in this test binary's
//! `CARGO_TARGET_TMPDIR/console/`, and in `docs/console/` (those the README
//! shows) when `UPDATE_CONSOLE_SCREENSHOTS` is set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Http, PATIENCE, Ticketd, Workspace};

/// A change made in one window must show in the other's queue this fast.
const LIVE_WITHIN: Duration = Duration::from_secs(2);
/// The WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The WebDriver key code of Enter.
const ENTER: char = '\u{E007}';
/// The WebDriver key code of Escape.
const ESCAPE: char = '\u{E00C}';
/// One browser at a time: the machine may have two cores.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Desktop and phone viewports.
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

#[test]
fn the_console_in_a_browser_with_auth_on() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let _one_browser = BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ws = Workspace::sqlite();
    let admin_secret = token(&ws, "admin", "console-admin");
    let agent_secret = token(&ws, "agent", "ana");
    let ticketd = Ticketd::start(&ws, &["--auth", "token"]);
    let admin = ticketd.http.with_bearer(&admin_secret);
    let base = ticketd.http.base.clone();

    // The console itself is public (the API calls it makes are not).
    for path in web_console_paths() {
        let reply = ticketd.http.get(path);
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert!(reply.headers.contains_key("etag"), "{path}");
        assert!(
            reply.headers["content-security-policy"].contains("script-src 'self'"),
            "{path}"
        );
    }
    ticketd.http.get("/tickets").assert_problem(401, None);
    seed(&admin);

    let driver = browser.start();
    let session = driver.session();
    let a = session.window();

    // Sign in: a bad token is refused next to the field, then the admin's.
    session.goto(&format!("{base}/"));
    session.wait_for("#token");
    session.type_into("#token", "tkt_not-a-token");
    session.click("#sign-in-submit");
    session.wait_text("#token-error", "Refused");
    assert_eq!(session.attribute("#token", "aria-invalid"), "true");
    session.clear("#token");
    session.type_into("#token", &admin_secret);
    session.click("#sign-in-submit");
    session.wait_until("the queue shows the seeded tickets", || {
        session.count("#queue-body tr") == 4
    });
    session.wait_text("#who", "admin");
    session.wait_text("#live", "live");
    check_labels(&session);

    // A second window, signed in on its own (the token is kept per tab).
    let b = session.new_window();
    session.switch_to(&b);
    session.goto(&format!("{base}/"));
    session.wait_for("#token");
    // By keyboard: the token, then Enter.
    session.type_into("#token", &format!("{admin_secret}{ENTER}"));
    session.wait_until("window B shows the queue", || {
        session.count("#queue-body tr") == 4
    });
    session.wait_text("#live", "live");
    let before = counts(&session);
    assert_eq!(before, [2, 1, 1], "open, triaged, closed");

    // Window A: a broken field shows the API's error next to it; then the
    // ticket is opened.
    session.switch_to(&a);
    session.type_into("#new-customer", "Initech");
    session.type_into("#new-subject", "   ");
    session.type_into("#new-message", "The console opened this ticket.");
    session.click("#new-submit");
    session.wait_text("#new-subject-error", "blank");
    assert_eq!(session.attribute("#new-subject", "aria-invalid"), "true");
    session.clear("#new-subject");
    session.type_into("#new-subject", "Printer on fire, from the console");
    session.click("#new-submit");
    session.wait_for("#new-link");
    let opened = Instant::now();
    assert_eq!(session.text("#new-subject-error"), "");

    // Window B sees it within a second or two, without a reload: the row
    // and the counts.
    session.switch_to(&b);
    while !session
        .text("#queue-body")
        .contains("Printer on fire, from the console")
    {
        assert!(
            opened.elapsed() < LIVE_WITHIN,
            "window B did not show the new ticket within {LIVE_WITHIN:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let seen_after = opened.elapsed();
    session.wait_until("B's counts show one more open ticket", || {
        counts(&session) == [3, 1, 1]
    });
    eprintln!("window B showed the new ticket {seen_after:?} after it was opened in A");

    // Window A: the ticket, then a race: a change made elsewhere (over the
    // API) is announced, and a change based on the old version is refused
    // with a 412 that is explained; the input survives the reload.
    session.switch_to(&a);
    session.click("#new-link");
    session.wait_text("#ticket-status", "open");
    let id = session.exec("return location.hash.split('/')[2];", json!([]));
    let id = id.as_str().expect("ticket id").to_owned();
    session.type_into("#change-agent", "ana");
    session.click("#assign-button");
    session.wait_text("#ticket-agent", "ana");
    session.wait_text("#ticket-version", "2");

    let elsewhere = admin.patch(
        &format!("/tickets/{id}"),
        &json!({"note": "Customer called: the printer is out now."}),
    );
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
    session.wait_text("#ticket-banner", "Changed elsewhere");
    session.type_into("#change-note", "Replaced the fuser.");
    session.click("#note-button");
    session.wait_text("#ticket-alert", "changed after you loaded it");
    assert!(session.text("#ticket-alert").contains("412"));
    assert_eq!(session.value("#change-note"), "Replaced the fuser.");
    session.click("#reload-button");
    session.wait_text("#ticket-version", "3");
    session.wait_text("#notes", "Customer called");
    assert_eq!(session.value("#change-note"), "Replaced the fuser.");
    session.click("#note-button");
    session.wait_text("#notes", "Replaced the fuser.");

    // A blank note: the API's 422 lands next to the note field.
    session.type_into("#change-note", "   ");
    session.click("#note-button");
    session.wait_text("#change-note-error", "blank");
    assert_eq!(session.attribute("#change-note", "aria-invalid"), "true");
    session.clear("#change-note");

    // A third window closes the ticket meanwhile. Window A's status change,
    // made on the version it shows, is a 412; applied anyway (`If-Match: *`)
    // it is a 409, "closed is final": explained, not swallowed, and nothing
    // is written.
    let c = session.new_window();
    session.switch_to(&c);
    session.goto(&format!("{base}/#/ticket/{id}"));
    session.wait_for("#token");
    session.type_into("#token", &format!("{admin_secret}{ENTER}"));
    session.wait_text("#ticket-status", "open");
    session.click("#close-button");
    session.wait_text("#ticket-status", "closed");
    let closed = admin.get(&format!("/tickets/{id}")).body;
    session.close_window();
    session.switch_to(&a);
    session.wait_text("#ticket-banner", "Changed elsewhere");
    session.wait_text("#ticket-status", "open");
    session.click("#triage-button");
    session.wait_text("#ticket-alert", "changed after you loaded it");
    session.click("#apply-anyway-button");
    session.wait_text("#ticket-alert", "a closed ticket cannot change status");
    let alert = session.text("#ticket-alert");
    assert!(
        alert.contains("409") && alert.contains("Nothing was written"),
        "{alert}"
    );
    assert_eq!(
        session.focused(),
        "ticket-alert",
        "the alert takes the focus"
    );
    let after = admin.get(&format!("/tickets/{id}")).body;
    assert_eq!(after["status"], "closed", "{after}");
    assert_eq!(after["version"], closed["version"], "the 409 wrote nothing");
    session.click("#reload-button");

    // Closed (by window C); the history says who did what.
    session.wait_text("#ticket-status", "closed");
    assert_eq!(
        session.exec(
            "return document.querySelector('#triage-button').disabled;",
            json!([])
        ),
        true,
        "a closed ticket's status buttons are disabled"
    );
    session.wait_until("the history shows the close", || {
        session.text("#history-body").contains("closed")
    });
    let history = session.text("#history-body");
    for expected in [
        "opened for Initech",
        "assigned to ana",
        "note: “Customer called",
        "console-admin",
    ] {
        assert!(history.contains(expected), "{expected:?} in {history}");
    }

    // Window B: the counts move (one open fewer, one closed more).
    session.switch_to(&b);
    session.wait_until("B's counts show the close", || {
        counts(&session) == [2, 1, 2]
    });
    session.wait_until("B's row shows the close", || {
        session
            .exec(
                "return [...document.querySelectorAll('#queue-body tr')]\
                 .filter(r => r.dataset.id === arguments[0]).map(r => r.dataset.status)[0] || null;",
                json!([id]),
            )
            .as_str()
            == Some("closed")
    });

    // Screenshots of the three screens, and the phone width.
    session.switch_to(&a);
    let shots = Screenshots::new();
    session.resize(DESKTOP);
    session.goto(&format!("{base}/#/ticket/{id}"));
    session.wait_text("#ticket-status", "closed");
    shots.save(&session, "ticket");
    session.goto(&format!("{base}/#/queue"));
    session.wait_until("the queue", || session.count("#queue-body tr") == 5);
    session.wait_text("#live", "live");
    shots.save(&session, "queue");
    session.goto(&format!("{base}/#/ops"));
    session.wait_until("three projections on the ops screen", || {
        session.count("#ops-projections [data-projection]") == 3
    });
    session.wait_text("#dead-letters", "none waiting");

    // A poison event (of a type this build does not know) in a seeded
    // ticket: every projection stops at it, and the ops screen lists it.
    let umbrella = admin.get("/tickets?customer=Umbrella").body["items"][0].clone();
    let poison = ws.insert_poison(
        umbrella["id"].as_str().expect("id"),
        umbrella["version"].as_u64().expect("version") + 1,
        "TicketMerged",
    );
    let row = |projection: &str| format!("#dl-{projection}-{poison}");
    for projection in ["detail", "list", "dashboard"] {
        session.wait_for(&row(projection));
    }
    let listed = session.text(&row("list"));
    for expected in [
        &*poison.to_string(),
        "TicketMerged",
        "pending",
        "unknown event type",
    ] {
        assert!(listed.contains(expected), "{expected:?} in {listed}");
    }
    session.wait_text("[data-projection=list] .state", "stopped on error");
    // A few samples, so the lag charts have lines.
    std::thread::sleep(Duration::from_secs(5));
    session.wait_until("a lag chart with samples", || {
        session
            .exec(
                "const p = document.querySelector('[data-projection=list] polyline');\
                 return p ? p.getAttribute('points').split(' ').length : 0;",
                json!([]),
            )
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    let list = session.text("[data-projection=list]");
    for expected in ["Position", "Lag", "running", "Holder", "Dead letters"] {
        assert!(
            list.contains(expected) || list.contains("idle"),
            "{expected:?} in {list}"
        );
    }
    shots.save(&session, "ops");

    // Skip asks first; Escape takes the question back, and nothing changed.
    let letter_state = |projection: &str| {
        admin
            .get(&format!(
                "/projections/dead-letters?projection={projection}"
            ))
            .body["dead_letters"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["position"] == poison).cloned())
            .map(|l| l["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let skip = format!("{}-skip", row("list"));
    let confirm = format!("{}-confirm", row("list"));
    session.exec(
        "document.querySelector('#dead-letters').scrollIntoView();",
        json!([]),
    );
    session.click(&skip);
    session.wait_for(&confirm);
    shots.save(&session, "ops-dead-letters");
    assert_eq!(format!("#{}", session.focused()), confirm);
    assert!(session.text(&row("list")).contains("for good"));
    assert_eq!(
        letter_state("list"),
        "pending",
        "a skip before its confirmation"
    );
    session.type_into(&confirm, &ESCAPE.to_string());
    session.wait_until("the question to go away", || {
        session.find(&confirm).is_none()
    });
    assert_eq!(format!("#{}", session.focused()), skip);
    assert_eq!(letter_state("list"), "pending");
    // By keyboard: Enter on Skip, Enter on the confirmation.
    session.type_into(&skip, &ENTER.to_string());
    session.wait_for(&confirm);
    session.type_into(&confirm, &ENTER.to_string());
    session.wait_text("#dead-done", "skipped");
    session.wait_until("the list's letter to show as skipped", || {
        session.attribute(&row("list"), "data-state") == "skipped"
    });
    assert_eq!(letter_state("list"), "skipped");
    assert_eq!(
        session.find(&skip),
        None,
        "a skipped letter keeps no buttons"
    );
    for projection in ["detail", "dashboard"] {
        session.click(&format!("{}-skip", row(projection)));
        session.click(&format!("{}-confirm", row(projection)));
        session.wait_until("the letter to show as skipped", || {
            session.attribute(&row(projection), "data-state") == "skipped"
        });
        assert_eq!(letter_state(projection), "skipped");
    }
    session.wait_text("#dead-letters", "none waiting");
    session.wait_until("every projection to run again", || {
        !session
            .text("#ops-projections")
            .contains("stopped on error")
    });
    session.wait_text("#readiness", "Ready");

    session.resize(PHONE);
    for (hash, ready) in [
        ("#/queue", "#queue-body tr"),
        (&*format!("#/ticket/{id}"), "#ticket-status"),
        ("#/ops", "#ops-projections [data-projection]"),
    ] {
        session.goto(&format!("{base}/{hash}"));
        session.wait_for(ready);
        let overflow = session.exec(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        );
        assert_eq!(
            overflow.as_i64(),
            Some(0),
            "{hash} scrolls sideways at phone width"
        );
    }
    session.goto(&format!("{base}/#/queue"));
    session.wait_for("#queue-body tr");
    shots.save(&session, "queue-phone");
    session.resize(DESKTOP);

    // An agent sees no ops screen.
    session.switch_to(&b);
    session.click("#sign-out");
    session.wait_for("#token");
    session.type_into("#token", &agent_secret);
    session.click("#sign-in-submit");
    session.wait_text("#who", "agent");
    assert!(
        !session.displayed("#nav-ops"),
        "an agent is shown the ops link"
    );
    session.goto(&format!("{base}/#/ops"));
    session.wait_until("the agent is sent to the queue", || {
        session.exec("return location.hash;", json!([])).as_str() == Some("#/queue")
    });
}

#[test]
fn the_console_with_auth_off_needs_no_sign_in() {
    let Some(browser) = Browser::find() else {
        return;
    };
    let _one_browser = BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let ws = Workspace::sqlite();
    // On loopback, auth is off by default.
    let ticketd = Ticketd::start(&ws, &[]);
    let base = ticketd.http.base.clone();
    let driver = browser.start();
    let session = driver.session();
    session.goto(&format!("{base}/"));
    session.wait_text("#who", "auth off");
    assert!(
        session.find("#token").is_none(),
        "a sign-in form without auth"
    );
    assert!(
        !session.displayed("#sign-out"),
        "a sign-out button without auth"
    );
    session.wait_text("#queue-empty", "No tickets");
    session.wait_text("#live", "live");
    session.type_into("#new-customer", "ACME");
    session.type_into("#new-subject", "Opened without a token");
    session.type_into("#new-message", "Auth is off on loopback.");
    session.click("#new-submit");
    session.wait_text("#queue-body", "Opened without a token");
    session.wait_text("#count-open", "1");
    assert!(
        session.displayed("#nav-ops"),
        "auth off: the ops screen is open"
    );
    session.click("#nav-ops");
    session.wait_until("the ops screen", || {
        session.count("#ops-projections [data-projection]") == 3
    });
    session.wait_text("#dead-letters", "No dead letters waiting");
}

fn web_console_paths() -> [&'static str; 4] {
    [
        "/",
        "/console/app.js",
        "/console/app.css",
        "/console/icon.svg",
    ]
}

/// Creates a token with the CLI and returns its secret (stdout's last line).
fn token(ws: &Workspace, role: &str, name: &str) -> String {
    let ran = ws.ticketd(&["token", "create", "--role", role, "--name", name]);
    assert!(ran.status.success(), "{ran:?}");
    ran.stdout.lines().last().expect("a secret").to_owned()
}

/// Four tickets: two open, one triaged (ana's), one closed.
fn seed(admin: &Http) {
    let tickets = [
        ("ACME", "Printer 7 is on fire", None),
        ("Globex", "Invoice shows the wrong VAT", Some("triaged")),
        ("ACME", "Password reset mail never arrives", Some("closed")),
        ("Umbrella", "Dashboard loads slowly", None),
    ];
    let mut last = 0;
    for (customer, subject, status) in tickets {
        let ticket = admin.create(customer, subject, "Details in the first message.");
        if let Some(status) = status {
            let mut change = json!({"status": status, "note": "Looked into it."});
            if status == "triaged" {
                change["agent"] = json!("ana");
            }
            let reply = admin.patch(
                &format!("/tickets/{}", ticket["id"].as_str().expect("id")),
                &change,
            );
            assert_eq!(reply.status, 200, "{reply:?}");
        }
        last += 1;
    }
    assert_eq!(last, 4);
    let deadline = Instant::now() + PATIENCE;
    while admin.get("/dashboard").body["total"] != 4 {
        assert!(
            Instant::now() < deadline,
            "the seed never reached the dashboard"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The queue screen's counts: open, triaged, closed.
fn counts(session: &Session) -> [u64; 3] {
    ["open", "triaged", "closed"].map(|status| {
        session
            .text(&format!("#count-{status}"))
            .parse()
            .unwrap_or(u64::MAX)
    })
}

/// Every visible form control has a label.
fn check_labels(session: &Session) {
    let unlabelled = session.exec(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
         .filter(e => !e.labels || e.labels.length === 0).map(e => e.id);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
}

/// Where screenshots go.
struct Screenshots {
    dirs: Vec<PathBuf>,
}

impl Screenshots {
    fn new() -> Self {
        let mut dirs = vec![Path::new(env!("CARGO_TARGET_TMPDIR")).join("console")];
        if std::env::var_os("UPDATE_CONSOLE_SCREENSHOTS").is_some() {
            dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console"));
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        Self { dirs }
    }

    fn save(&self, session: &Session, name: &str) {
        // Let the bars' transition and the row flash finish.
        std::thread::sleep(Duration::from_millis(1800));
        let png = session.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        for dir in &self.dirs {
            std::fs::write(dir.join(format!("{name}.png")), &png).expect("write screenshot");
        }
    }
}

// ---- A small WebDriver client ---------------------------------------------

/// Chromium and chromedriver, found on `PATH`.
struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

impl Browser {
    /// `None` (with the reason printed) outside CI when either is missing;
    /// a failure in CI.
    fn find() -> Option<Self> {
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find_map(on_path);
        let chromedriver = on_path("chromedriver");
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Some(Self {
                chromium,
                chromedriver,
            }),
            (chromium, chromedriver) => {
                let why = format!(
                    "the console's browser test needs Chromium and chromedriver on PATH \
                     (Debian: apt-get install chromium chromium-driver); found chromium: {}, \
                     chromedriver: {}",
                    chromium.is_some(),
                    chromedriver.is_some()
                );
                assert!(std::env::var_os("CI").is_none(), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    fn start(&self) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let process = Command::new(&self.chromedriver)
            .arg(format!("--port={port}"))
            // Dates render the same everywhere.
            .env("TZ", "UTC")
            .env("LANG", "en_US.UTF-8")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver = Driver {
            process,
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into(),
            chromium: self.chromium.clone(),
        };
        let deadline = Instant::now() + PATIENCE;
        while driver.call("GET", "/status", None)["value"]["ready"] != true {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// A running chromedriver, killed when dropped.
struct Driver {
    process: Child,
    base: String,
    agent: ureq::Agent,
    chromium: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Driver {
    /// One WebDriver command: the whole JSON answer (connection errors are
    /// `null`, so a caller polling `/status` can wait).
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self
                .agent
                .post(url)
                .send_json(body.cloned().unwrap_or_else(|| json!({}))),
        };
        match response {
            Ok(mut response) => response.body_mut().read_json().unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    fn session(&self) -> Session<'_> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--lang=en-US",
                    "--force-device-scale-factor=1",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            },
        }}});
        let answer = self.call("POST", "/session", Some(&capabilities));
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Session { driver: self, id }
    }
}

/// One browser (its windows share nothing but the process).
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.driver
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Session<'_> {
    /// A command of this session; a WebDriver error fails the test.
    #[track_caller]
    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let answer = self.try_cmd(method, path, body);
        match answer {
            Ok(value) => value,
            Err(error) => panic!("WebDriver {method} {path}: {error}"),
        }
    }

    fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, Value> {
        let answer = self
            .driver
            .call(method, &format!("/session/{}{path}", self.id), Some(&body));
        let value = answer["value"].clone();
        if value.get("error").is_some() || answer.is_null() {
            Err(answer)
        } else {
            Ok(value)
        }
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url}));
    }

    fn window(&self) -> String {
        let handle = self.cmd("GET", "/window", Value::Null);
        handle.as_str().expect("window handle").to_owned()
    }

    /// A new window (a window, not a tab: a background tab's timers would
    /// be throttled).
    fn new_window(&self) -> String {
        let opened = self.cmd("POST", "/window/new", json!({"type": "window"}));
        opened["handle"].as_str().expect("handle").to_owned()
    }

    /// Closes the current window (then switch to another).
    fn close_window(&self) {
        self.cmd("DELETE", "/window", Value::Null);
    }

    /// The id of the element that has the focus ("" when none has one).
    fn focused(&self) -> String {
        self.exec(
            "return document.activeElement ? document.activeElement.id : '';",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn switch_to(&self, handle: &str) {
        self.cmd("POST", "/window", json!({"handle": handle}));
    }

    fn resize(&self, (width, height): (u32, u32)) {
        self.cmd(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self
            .try_cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    #[track_caller]
    fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(element) = self.find(css) {
                return element;
            }
            assert!(Instant::now() < deadline, "no {css} on the page");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    #[track_caller]
    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits until the element's text contains `part`.
    #[track_caller]
    fn wait_text(&self, css: &str, part: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text(css);
            if text.contains(part) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never said {part:?}; it says {text:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The element's text content ("" when there is none).
    fn text(&self, css: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn value(&self, css: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.value : '';",
            json!([css]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn attribute(&self, css: &str, name: &str) -> String {
        self.exec(
            "const e = document.querySelector(arguments[0]); return (e && e.getAttribute(arguments[1])) || '';",
            json!([css, name]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn count(&self, css: &str) -> usize {
        self.exec(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .as_u64()
        .unwrap_or(0) as usize
    }

    fn displayed(&self, css: &str) -> bool {
        let element = self.wait_for(css);
        self.cmd("GET", &format!("/element/{element}/displayed"), Value::Null) == true
    }

    /// Clicks the element, as a user would (WebDriver scrolls it into view).
    #[track_caller]
    fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let element = self.wait_for(css);
            // A re-rendered screen may replace the element between the two
            // calls: find it again then.
            match self.try_cmd("POST", &format!("/element/{element}/click"), json!({})) {
                Ok(_) => return,
                Err(error) => assert!(Instant::now() < deadline, "could not click {css}: {error}"),
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Types `text` into the element, key by key.
    #[track_caller]
    fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css);
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn clear(&self, css: &str) {
        let element = self.wait_for(css);
        self.cmd("POST", &format!("/element/{element}/clear"), json!({}));
    }

    fn screenshot(&self) -> Vec<u8> {
        let encoded = self.cmd("GET", "/screenshot", Value::Null);
        decode_base64(encoded.as_str().expect("base64 screenshot"))
    }
}

/// Standard base64 (what WebDriver sends screenshots in).
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("not base64: {other}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u32> = chunk
            .iter()
            .take_while(|c| **c != b'=')
            .map(|c| value(*c))
            .collect();
        let joined = data
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | (v << (18 - 6 * i)));
        for i in 0..data.len().saturating_sub(1) {
            out.push((joined >> (16 - 8 * i)) as u8);
        }
    }
    out
}
