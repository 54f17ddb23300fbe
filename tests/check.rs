//! `portsyncd check`: the real binary, run inside a private network
//! namespace against a real redis-server that the real daemon brought to
//! convergence; then drift made behind the daemon's back.

mod util;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use util::{port_names, refs, wait_converged, Daemon, Netns, RedisServer, TempDir};

/// What one `portsyncd check` run said.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A configuration for `check`: an empty file (so the host's
/// /etc/sonic/portsyncd.conf cannot leak in) and a database_config.json.
struct CheckConfig {
    dir: TempDir,
    database_config: PathBuf,
}

impl CheckConfig {
    fn new(redis: &RedisServer) -> CheckConfig {
        let dir = TempDir::new().unwrap();
        let database_config = redis.write_database_config(dir.path(), true).unwrap();
        std::fs::write(dir.path().join("empty.toml"), "").unwrap();
        CheckConfig {
            dir,
            database_config,
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("empty.toml")
    }
}

/// Run `portsyncd check ARGS` inside `ns` with `--config FILE --set
/// redis.database_config=DB`.
fn check(ns: &Netns, file: &Path, db: &Path, args: &[&str]) -> Checked {
    let out = ns
        .command(&Daemon::binary())
        .arg("check")
        .arg("--config")
        .arg(file)
        .arg("--set")
        .arg(format!("redis.database_config={}", db.display()))
        .args(args)
        .output()
        .unwrap();
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Six configured ports, popped into APPL_DB PORT_TABLE, created after the
/// daemon started (a cold start ignores netdevs that existed before it),
/// in assorted states, with STATE_DB converged.
fn converged_switch() -> (Netns, RedisServer, Daemon, Vec<String>) {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let names = port_names(6);
    redis.configure_ports(&refs(&names)).unwrap();
    let daemon = Daemon::start(&ns, &redis);
    daemon.wait_ready();
    redis.orchagent_pop().unwrap();
    for (i, n) in names.iter().enumerate() {
        ns.add_port(n).unwrap();
        if i % 3 != 2 {
            ns.set_up(n).unwrap();
        }
    }
    ns.set_mtu(&names[1], 9100).unwrap();
    // A port netdev orchagent does not know, and a non-port link: neither
    // is checked.
    ns.add_port("Ethernet40").unwrap();
    ns.ip(&["link", "add", "Bridge", "type", "bridge"]).unwrap();
    // Each port's final state, not whatever the kernel shows first: an
    // admin-up veth turns RUNNING a moment later (linkwatch).
    for (i, n) in names.iter().enumerate() {
        let mtu = if i == 1 { 9100 } else { 1500 };
        let updown = if i % 3 != 2 { "up" } else { "down" };
        redis.wait_state(n, updown, updown, mtu).unwrap();
    }
    wait_converged(&ns, &redis, &names);
    (ns, redis, daemon, names)
}

#[test]
fn in_step_then_each_kind_of_drift_is_named_and_nothing_else() {
    let (ns, redis, mut daemon, names) = converged_switch();
    let cfg = CheckConfig::new(&redis);
    // Another writer's field in one of our hashes is not a difference.
    redis
        .cmd(6, &["HSET", "PORT_TABLE|Ethernet20", "speed", "100000"])
        .unwrap();

    let ok = check(&ns, &cfg.file(), &cfg.database_config, &[]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert_eq!(
        ok.stdout,
        "6 ports checked: 6 in step, 0 differing \
         (1 netdev not in APPL_DB PORT_TABLE, not checked)\n",
        "{ok:?}"
    );
    let json = check(&ns, &cfg.file(), &cfg.database_config, &["--json"]);
    assert_eq!(json.code, Some(0), "{json:?}");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["in_step"], true);
    assert_eq!(doc["summary"]["checked"], 6);
    assert_eq!(doc["not_in_port_table"], serde_json::json!(["Ethernet40"]));

    // Behind the daemon's back: stop it, then make four kinds of drift.
    daemon.stop();
    let [e0, e4, e8, e12, e16, e20] = [0, 1, 2, 3, 4, 5].map(|i| names[i].as_str());
    assert_eq!(ns.link_state(e0), Some((true, true, 1500)));
    redis
        .cmd(
            6,
            &["HSET", &format!("PORT_TABLE|{e0}"), "admin_status", "down"],
        )
        .unwrap();
    redis.cmd(6, &["DEL", &format!("PORT_TABLE|{e4}")]).unwrap();
    ns.del_port(e8).unwrap();
    ns.set_mtu(e12, 9000).unwrap();
    // Untouched: e16 (up) and e20 (down, with the other writer's field).
    let _ = (e16, e20);

    let drift = check(&ns, &cfg.file(), &cfg.database_config, &[]);
    assert_eq!(drift.code, Some(1), "{drift:?}");
    assert_eq!(
        drift.stdout,
        "Ethernet0: STATE_DB admin_status down, kernel up\n\
         Ethernet4: STATE_DB has no entry, kernel up/up mtu 9100\n\
         Ethernet8: STATE_DB entry but no netdev\n\
         Ethernet12: STATE_DB mtu 1500, kernel 9000\n\
         6 ports checked: 2 in step, 4 differing \
         (1 netdev not in APPL_DB PORT_TABLE, not checked)\n",
        "{drift:?}"
    );

    let json = check(&ns, &cfg.file(), &cfg.database_config, &["--json"]);
    assert_eq!(json.code, Some(1), "{json:?}");
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["in_step"], false);
    assert_eq!(
        doc["summary"],
        serde_json::json!({"checked": 6, "in_step": 2, "differing": 4, "not_in_port_table": 1})
    );
    let ports = doc["ports"].as_array().unwrap();
    let differing: Vec<(&str, &str)> = ports
        .iter()
        .filter(|p| p["in_step"] == false)
        .map(|p| {
            (
                p["port"].as_str().unwrap(),
                p["difference"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        differing,
        [
            ("Ethernet0", "fields"),
            ("Ethernet4", "no_entry"),
            ("Ethernet8", "no_netdev"),
            ("Ethernet12", "fields"),
        ]
    );
    let in_step: Vec<&str> = ports
        .iter()
        .filter(|p| p["in_step"] == true)
        .map(|p| p["port"].as_str().unwrap())
        .collect();
    assert_eq!(in_step, ["Ethernet16", "Ethernet20"]);
    let e12 = ports.iter().find(|p| p["port"] == "Ethernet12").unwrap();
    assert_eq!(
        e12["fields"],
        serde_json::json!([{"field": "mtu", "state_db": "1500", "expected": "9000"}])
    );

    // The check wrote nothing: the drift is still there, and the other
    // writer's field too.
    assert!(redis
        .hgetall(6, &format!("PORT_TABLE|{e4}"))
        .unwrap()
        .is_empty());
    assert!(redis
        .hgetall(6, "PORT_TABLE|Ethernet20")
        .unwrap()
        .contains(&("speed".to_string(), "100000".to_string())));
    assert!(redis.keys(6, "PORT_TABLE|Ethernet40").unwrap().is_empty());
}

#[test]
fn redis_stopped_is_exit_2_naming_the_database() {
    let ns = Netns::new().unwrap();
    let mut redis = RedisServer::start().unwrap();
    let cfg = CheckConfig::new(&redis);
    redis.stop();
    // The database config through the environment this time.
    let out = ns
        .command(&Daemon::binary())
        .args(["check", "--config"])
        .arg(cfg.file())
        .env("PORTSYNCD_REDIS_DATABASE_CONFIG", &cfg.database_config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot check: APPL_DB at 127.0.0.1:"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn redis_silent_past_timeout_ms_is_exit_2_naming_the_timeout() {
    // A socket that accepts connections (the kernel's backlog) but never
    // answers: a wedged Redis.
    let dir = TempDir::new().unwrap();
    let sock = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&sock).unwrap();
    let db = dir.path().join("database_config.json");
    std::fs::write(
        &db,
        format!(
            r#"{{"INSTANCES": {{"r": {{"hostname": "127.0.0.1", "port": 1, "unix_socket_path": "{}"}}}},
  "DATABASES": {{"APPL_DB": {{"id": 0, "separator": ":", "instance": "r"}},
    "CONFIG_DB": {{"id": 4, "separator": "|", "instance": "r"}},
    "STATE_DB": {{"id": 6, "separator": "|", "instance": "r"}}}}}}"#,
            sock.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let ns = Netns::new().unwrap();
    let out = check(
        &ns,
        &dir.path().join("empty.toml"),
        &db,
        &["--json", "--set", "redis.timeout_ms=300"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("APPL_DB at unix:") && out.stderr.contains("redis.timeout_ms = 300"),
        "{out:?}"
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        doc["error"].as_str().unwrap().contains("timed out"),
        "{doc}"
    );
}

#[test]
fn a_bad_set_is_exit_2_naming_the_key() {
    let ns = Netns::new().unwrap();
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("empty.toml"), "").unwrap();
    let out = check(
        &ns,
        &dir.path().join("empty.toml"),
        Path::new("/nonexistent/database_config.json"),
        &["--set", "redis.timeout_ms=banana"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("redis.timeout_ms"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = check(
        &ns,
        &dir.path().join("empty.toml"),
        Path::new("/nonexistent/database_config.json"),
        &["--set", "redis.no_such_key=1"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no_such_key"), "{out:?}");
}
