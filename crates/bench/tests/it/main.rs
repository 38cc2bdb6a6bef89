//! End to end: `ticket-bench all --smoke` against the real binaries. Checks
//! that every workload ran and counted something, never how fast: speed
//! targets are read in the report, not asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_ticket-bench");

/// `ticketd` and `ticket-projector` of the same profile, beside this
/// binary. `cargo test --workspace` builds them; `cargo test -p bench` does
/// not, so build them then.
fn binaries() -> PathBuf {
    let dir = Path::new(BENCH).parent().expect("a folder").to_owned();
    if !(dir.join("ticketd").is_file() && dir.join("ticket-projector").is_file()) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "tickets", "--bins"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "building ticketd and ticket-projector failed"
        );
    }
    dir
}

/// The Python that runs the peer (`PEER_PYTHON`, as `.ci/run` sets it from
/// `scripts/install-peer.sh`). Required in CI; elsewhere the run without it
/// checks that the peer is skipped with a reason.
fn peer_python() -> Option<PathBuf> {
    match std::env::var_os("PEER_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "CI is set and PEER_PYTHON is not: run scripts/install-peer.sh and export its path"
            )
        }
        None => {
            eprintln!(
                "PEER_PYTHON is not set: the peer is checked skipped, not run (bash scripts/install-peer.sh)"
            );
            None
        }
    }
}

fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

#[test]
fn the_smoke_run_measures_every_workload() {
    let bins = binaries();
    let out = tempfile::tempdir().expect("temp dir");
    let peer_python = peer_python();
    let mut bench = Command::new(BENCH);
    if let Some(python) = &peer_python {
        bench.arg("--peer-python").arg(python);
    }
    let output = bench
        .args(["all", "--smoke", "--tickets", "600", "--sizes", "200"])
        .args([
            "--concurrency",
            "1,2",
            "--duration",
            "500ms",
            "--samples",
            "5",
        ])
        .arg("--out")
        .arg(out.path())
        .arg("--bin-dir")
        .arg(&bins)
        .output()
        .expect("run ticket-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ticket-bench failed:\n{stderr}");

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("latest.json")).expect("latest.json"),
    )
    .expect("JSON");
    assert_eq!(report["meta"]["smoke"], true);

    let levels = report["commands"].as_array().expect("commands");
    assert_eq!(levels.len(), 2, "one closed-loop level per concurrency");
    for level in levels {
        assert!(count(&level["commands"]) > 0, "{level}");
        assert_eq!(count(&level["errors"]), 0, "{level}");
        assert!(count(&level["latency"]["count"]) > 0, "{level}");
        assert!(
            level["ticketd"]["peak_rss_mb"].as_f64() > Some(0.0),
            "{level}"
        );
        // Ten tickets per customer.
        let tickets = count(&level["tickets"]);
        assert!(tickets > 0, "{level}");
        let customers = count(&level["customers"]);
        assert!(
            customers * 10 >= tickets && customers <= tickets.div_ceil(10) + 1,
            "{level}"
        );
        assert!(level["ticketd_cpu_us_per_command"].as_f64() >= Some(0.0));
    }

    // The peer ran the same commands, or said why not.
    let peer = &report["peer"];
    if peer_python.is_some() {
        let ran = &peer["ran"];
        assert!(count(&ran["commands"]) > 0, "{peer}");
        assert_eq!(count(&ran["errors"]), 0, "{peer}");
        assert_eq!(ran["synchronous"], "FULL", "{peer}");
        assert!(
            report["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .any(|row| row["metric"] == "commands/s vs Python eventsourcing"),
            "the ratio is read against its target"
        );
    } else {
        assert!(peer["skipped"].is_string(), "{peer}");
    }

    let lag = &report["lag"];
    assert!(count(&lag["commands"]) > 0, "{lag}");
    assert_eq!(count(&lag["errors"]), 0, "{lag}");
    assert!(count(&lag["lag"]["count"]) > 0, "{lag}");
    assert_eq!(count(&lag["never_seen"]), 0, "{lag}");

    let events = count(&report["import"]["events"]);
    assert!(events > 600 * 3, "{}", report["import"]);
    assert_eq!(
        count(&report["replay"]["events"]),
        events,
        "the replay saw every event"
    );
    assert_eq!(count(&report["replay"]["key_loads"]), 0, "clear events");
    // The same tickets sealed, one key per ten tickets, and replayed.
    let sealed = &report["sealed"];
    assert_eq!(count(&sealed["customers"]), 60, "{sealed}");
    assert_eq!(count(&sealed["import"]["events"]), events, "{sealed}");
    assert_eq!(count(&sealed["replay"]["events"]), events, "{sealed}");
    assert!(count(&sealed["replay"]["key_loads"]) >= 60, "{sealed}");
    let runs = report["rebuild"]["runs"].as_array().expect("rebuild runs");
    let projections: Vec<&str> = runs
        .iter()
        .filter_map(|r| r["projection"].as_str())
        .collect();
    assert_eq!(projections, ["list", "dashboard", "detail"]);
    for run in runs {
        assert_eq!(count(&run["events"]), events, "{run}");
        assert!(
            run["said"]
                .as_str()
                .is_some_and(|s| s.contains("swapped in")),
            "{run}"
        );
        // The projector's own phases fit inside the wall time around it.
        let seconds = run["seconds"].as_f64().expect("seconds");
        let replay = run["replay_seconds"].as_f64().expect("replay_seconds");
        let verify = run["verify_seconds"].as_f64().expect("verify_seconds");
        assert!(replay + verify > 0.0, "{run}");
        assert!(replay + verify <= seconds, "{run}");
    }

    let reads = report["reads"].as_array().expect("reads");
    let sizes: Vec<u64> = reads.iter().map(|r| count(&r["tickets"])).collect();
    assert_eq!(sizes, [200, 600]);
    for at in reads {
        let shapes = at["shapes"].as_array().expect("shapes");
        // 5 filters × 2 sorts × 2 orders, detail, dashboard.
        assert_eq!(shapes.len(), 22);
        for shape in shapes {
            assert_eq!(count(&shape["client"]["count"]), 5, "{shape}");
            assert_eq!(
                count(&shape["server"]["count"]),
                5,
                "server side from the log: {shape}"
            );
        }
    }
    let naive = report["naive"].as_array().expect("naive");
    assert_eq!(naive.len(), 2);
    for at in naive {
        for shape in at["shapes"].as_array().expect("shapes") {
            assert!(count(&shape["latency"]["count"]) > 0, "{shape}");
        }
    }
    let ratios = report["ratios"].as_array().expect("ratios");
    assert!(
        ratios
            .iter()
            .all(|r| r["dashboard_server"].as_f64() > Some(0.0)),
        "{ratios:?}"
    );

    let targets = report["targets"].as_array().expect("targets");
    assert!(targets.len() >= 15, "{targets:?}");
    assert!(
        targets
            .iter()
            .all(|t| t["verdict"] == "meets" || t["verdict"] == "misses")
    );

    let markdown = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md");
    assert!(
        markdown.contains("## Targets") && markdown.contains("Smoke run"),
        "{markdown}"
    );
    for plot in ["throughput.svg", "lag.svg", "queries.svg"] {
        let svg = std::fs::read_to_string(out.path().join(plot)).expect(plot);
        assert!(svg.starts_with("<svg"), "{plot}");
        assert!(markdown.contains(plot), "{plot} not linked");
    }
}
