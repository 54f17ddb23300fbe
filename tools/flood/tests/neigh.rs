//! `flood neigh`: the real binary driving the real neighsyncd, tiny sizes.
//!
//! The runs are serialised: each flood raises the kernel's global
//! neighbor limits and puts back what it found, so two at once could put
//! back each other's raised values.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use provenance::assert_provenance;
use testbed::{Netns, RedisServer, TempDir};

mod provenance;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn flood() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flood"))
}

/// The daemon flood drives: the workspace builds it beside flood (`cargo
/// test` builds every member's binaries before running any test).
fn neighsyncd() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_flood")).with_file_name("neighsyncd");
    assert!(
        path.exists(),
        "{} missing: build the workspace (cargo build --workspace) first",
        path.display()
    );
    path
}

/// Run flood, require exit 0, and return its stdout and JSON document.
fn run_ok(cmd: &mut Command, json: &Path) -> (String, serde_json::Value) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flood exited {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (stdout, doc)
}

/// What every neighbor document holds, and 0 wrong.
fn assert_common(doc: &serde_json::Value, stdout: &str, kernel: u64) {
    assert_eq!(doc["wrong_entries"], 0, "{stdout}");
    let v = &doc["verify"];
    assert_eq!(v["kernel"], kernel, "{v:#}");
    assert_eq!(v["appl"], kernel, "{v:#}");
    for k in ["missing", "wrong_mac", "wrong_family", "extra"] {
        assert_eq!(v[k], 0, "{k}: {v:#}");
    }
    assert!(doc["daemon_rss_kb"].as_u64().unwrap() > 0, "{doc:#}");
    assert!(
        doc["daemon_rss_peak_kb"].as_u64().unwrap() >= doc["daemon_rss_kb"].as_u64().unwrap(),
        "{doc:#}"
    );
    // When, on what code and on what CPU, as for the port runs.
    assert_provenance(doc);
    assert!(stdout.contains("wrong entries 0"), "{stdout}");
    for internal in ["target", ": met", "MISSED"] {
        assert!(!stdout.contains(internal), "{internal:?} in:\n{stdout}");
    }
}

#[test]
fn neigh_initial_times_the_sync_of_every_neighbor() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let json = dir.path().join("initial.json");
    let (stdout, doc) = run_ok(
        flood()
            .args(["neigh", "initial", "200", "--ipv6", "--no-progress"])
            .arg("--daemon")
            .arg(neighsyncd())
            .arg("--json")
            .arg(&json),
        &json,
    );
    assert_common(&doc, &stdout, 200);
    assert_eq!(doc["mode"], "neigh initial");
    assert_eq!(doc["neighbors"], 200);
    assert_eq!(doc["families"], "IPv4+IPv6");
    assert_eq!(doc["orchagent_pop_emulated"], false);
    let all = doc["spawn_to_all_ms"].as_f64().unwrap();
    let first = doc["spawn_to_first_ms"].as_f64().unwrap();
    assert!(0.0 < first && first <= all && all < 30_000.0, "{doc:#}");
    assert!(doc["daemon_cpu_ms"].as_f64().unwrap() > 0.0, "{doc:#}");
    assert!(doc["daemon_cpu_us_per_neighbor"].as_f64().unwrap() > 0.0);
    // The daemon's own account, from its totals line at exit.
    assert_eq!(doc["daemon_totals"]["written"], 200, "{doc:#}");
    assert!(stdout.contains(&format!("wrote {}", json.display())));
}

#[test]
fn neigh_latency_measures_daemon_and_floor_change_by_change() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let json = dir.path().join("latency.json");
    let (stdout, doc) = run_ok(
        flood()
            .args(["neigh", "latency", "--count", "20", "--rounds", "2"])
            .args(["--neighbors", "16", "--gap-us", "0", "--no-progress"])
            .arg("--daemon")
            .arg(neighsyncd())
            .arg("--json")
            .arg(&json),
        &json,
    );
    assert_common(&doc, &stdout, 16);
    assert_eq!(doc["changes"], 20);
    assert_eq!(doc["unsettled_changes"], 0, "{doc:#}");
    // A write read back before flood's own socket heard the kernel's
    // event counts as 0 µs ("early"; on a loaded machine the floor's can
    // be): a 0 percentile must be explained by early writes.
    for (hist, early) in [
        ("latency_us", "early_writes"),
        ("floor_latency_us", "floor_early_writes"),
        ("ack_latency_us", ""),
        ("floor_ack_latency_us", ""),
    ] {
        let early = doc[early].as_u64().unwrap_or(0);
        for p in ["p50", "p90", "p99", "p999", "max"] {
            let v = doc[hist][p].as_f64();
            assert!(
                v.is_some_and(|v| v > 0.0 || (v == 0.0 && early > 0 && p != "max")),
                "{hist}.{p} = {v:?}, {early} early writes"
            );
        }
    }
    // Every change seen by flood's socket, or counted as unheard.
    let heard = doc["latency_us"]["count"].as_u64().unwrap();
    assert_eq!(heard + doc["unheard_changes"].as_u64().unwrap(), 20);
    assert!(doc["ratio_to_floor"]["p50"].as_f64().unwrap() > 0.0);
    assert!(doc["kernel_events"].as_u64().unwrap() >= 20, "{doc:#}");
    assert!(doc["daemon_cpu_us_per_event"].as_f64().unwrap() > 0.0);
    assert_eq!(doc["floor"]["changes"], 20);
    assert_eq!(doc["floor"]["unsettled_changes"], 0, "{doc:#}");
    assert!(stdout.contains("ratio daemon / floor"), "{stdout}");
}

#[test]
fn neigh_burst_settles_with_every_entry_right() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let json = dir.path().join("burst.json");
    let (stdout, doc) = run_ok(
        flood()
            .args(["neigh", "burst", "100", "100", "--no-progress"])
            .arg("--daemon")
            .arg(neighsyncd())
            .arg("--json")
            .arg(&json),
        &json,
    );
    assert_common(&doc, &stdout, 200);
    assert_eq!(
        (doc["base"].as_u64(), doc["new"].as_u64()),
        (Some(100), Some(100))
    );
    assert_eq!(doc["changes"], 200);
    assert_eq!(doc["settled"], true, "{doc:#}");
    let settle = doc["settle_ms"].as_f64().unwrap();
    assert!(settle > 0.0 && settle <= doc["last_write_ms"].as_f64().unwrap());
    assert!(doc["initial_sync_ms"].as_f64().unwrap() > 0.0, "{doc:#}");
    // One message per line of the batch, read by flood's own socket.
    assert_eq!(doc["kernel_events"], 200, "{doc:#}");
    assert_eq!(doc["listener_overruns"], 0, "{doc:#}");
    assert_eq!(doc["kernel_drops"], 0, "{doc:#}");
    assert!(doc["daemon_cpu_us_per_event"].as_f64().unwrap() > 0.0);
    // The batching floor, after the daemon, on the same batch.
    let floor = &doc["floor"];
    assert_eq!(floor["kind"], "batching", "{doc:#}");
    assert_eq!(floor["settled"], true, "{doc:#}");
    assert_eq!(floor["kernel_events"], 200, "{doc:#}");
    assert_eq!(floor["kernel_drops"], 0, "{doc:#}");
    assert_eq!(floor["wrong_entries"], 0, "{doc:#}");
    assert_eq!(floor["verify"]["appl"], 200, "{doc:#}");
    assert!(floor["cpu_us_per_event"].as_f64().unwrap() > 0.0, "{doc:#}");
    assert!(doc["cpu_ratio_to_floor"].as_f64().unwrap() > 0.0, "{doc:#}");
    assert!(
        stdout.contains("floor (batching): matched its kernel"),
        "{stdout}"
    );
}

/// A neighsyncd started the way an operator would, for `attach`.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn neigh_attach_measures_a_running_daemon_and_removes_its_neighbors() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let dbconfig = redis.write_database_config(dir.path(), true).unwrap();
    // IPv6 on, link-local addresses and all: the kernel's own neighbors
    // are not flood's to judge.
    let ns = Netns::new().unwrap();
    for p in ["Ethernet0", "Ethernet4"] {
        ns.add_port(p).unwrap();
        ns.set_up(p).unwrap();
    }
    let conf = dir.path().join("empty.toml");
    std::fs::write(&conf, "").unwrap();
    let log = std::fs::File::create(dir.path().join("neighsyncd.log")).unwrap();
    let daemon = Running {
        child: Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(neighsyncd())
            .arg("--config")
            .arg(&conf)
            .arg("--set")
            .arg(format!("redis.database_config={}", dbconfig.display()))
            .args(["--set", "metrics.listen=", "--set", "log.output=stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    };
    let json = dir.path().join("attach.json");
    let (stdout, doc) = run_ok(
        flood()
            .args(["neigh", "attach", "burst", "50", "50", "--no-progress"])
            .args(["--netns", &ns.name, "--port-names", "Ethernet0,Ethernet4"])
            .arg("--redis")
            .arg(format!("unix:{}", redis.socket_path().display()))
            .arg("--pid")
            .arg(daemon.child.id().to_string())
            .arg("--json")
            .arg(&json),
        &json,
    );
    assert_common(&doc, &stdout, 100);
    assert_eq!(doc["attach"], true);
    assert_eq!(doc["settled"], true, "{doc:#}");
    assert!(doc["daemon_totals"].is_null(), "{doc:#}");
    // flood's neighbors (198.18.0.0/15) are gone again.
    let left = ns.ip(&["-4", "neigh", "show"]).unwrap();
    assert!(!left.contains("198.18."), "{left}");
}

#[test]
fn neigh_help_and_bad_input() {
    let help = |args: &[&str]| {
        let out = flood().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(help(&["--help"]).contains("flood neigh"));
    let all = help(&["neigh", "--help"]);
    assert!(
        all.contains("initial N") && all.contains("burst BASE NEW"),
        "{all}"
    );
    let latency = help(&["neigh", "latency", "--help"]);
    assert!(latency.contains("--floor-db") && latency.contains("--daemon"));
    let attach = help(&["neigh", "attach", "burst", "--help"]);
    assert!(attach.contains("--netns") && attach.contains("--pid"));
    for h in [&all, &latency, &attach] {
        assert!(h.lines().count() < 110, "{h}");
    }
    for (args, named) in [
        (&["neigh", "initial", "lots"][..], "lots"),
        (&["neigh", "burst", "10"][..], "NEW"),
        (&["neigh", "attach", "initial", "5"][..], "attach"),
        (
            &["neigh", "latency", "--daemon", "/nonexistent/neighsyncd"][..],
            "/nonexistent/neighsyncd",
        ),
    ] {
        let out = flood().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
