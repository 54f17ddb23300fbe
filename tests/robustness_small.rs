//! Issue 11's smaller items, each against the real binary: what an
//! unrelated environment variable, a Redis host name, a low `nofile`
//! limit, non-UTF-8 CONFIG_DB bytes and a huge CONFIG_DB log level used
//! to do to the daemon.
//!
//! Each test fails on the build before its fix; run one against an older
//! binary with `TEST_PORTSYNCD_BIN=/path/to/old/portsyncd`.

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use util::metrics::{http_raw, in_netns};
use util::{Daemon, DaemonOptions, Netns, RedisOptions, RedisServer, TempDir, WAIT};

/// The binary with a clean `PORTSYNCD_*` environment plus `env`.
fn portsyncd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(Daemon::binary());
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTSYNCD_") || k == "NOTIFY_SOCKET" {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

/// Item 3: `PORTSYNCD_BIN` (set for a wrapper, a test harness, …) made the
/// daemon exit 2 as if it were a bad setting.
#[test]
fn an_unrelated_portsyncd_variable_is_warned_about_not_fatal() {
    let out = portsyncd(
        &["--config", "/dev/null", "--print-config"],
        &[
            ("PORTSYNCD_BIN", "/usr/local/bin/portsyncd"),
            ("PORTSYNCD_NETLINK_RING_BYTES", "65536"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("PORTSYNCD_BIN") && stderr.contains("ignored"),
        "{stderr}"
    );
    // The known variable next to it still applies.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ring_bytes = 65536"), "{stdout}");
    // A known section with an unknown key, or a bad value: exit 2 as before.
    for (name, value) in [
        ("PORTSYNCD_NETLINK_RING", "65536"),
        ("PORTSYNCD_NETLINK_RING_BYTES", "lots"),
    ] {
        let out = portsyncd(
            &["--config", "/dev/null", "--print-config"],
            &[(name, value)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
}

/// The log line holding `needle` (the last one).
fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .rev()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the log"))
}

/// Item 5: 92 KB of junk in CONFIG_DB `LOGGER|portsyncd LOGLEVEL` was
/// quoted whole: one 92 KB log line at start-up and one at every change.
#[test]
fn a_huge_loglevel_is_quoted_cut_with_the_count_of_what_was_left_out() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let junk = "junk\n".repeat(92 * 1024 / 5);
    redis
        .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", &junk])
        .unwrap();
    let d = Daemon::start(&ns, &redis);
    d.wait_ready();
    let log = d.wait_log("is not a level");
    let line = line_with(&log, "is not a level");
    assert!(line.len() < 400, "{} bytes: {line}", line.len());
    assert!(
        line.contains("\"junk\\njunk") && line.contains("more bytes)"),
        "{line}"
    );
    // Followed live, through the loop's APPL_DB connection: cut the same way.
    let more = format!("{junk}more");
    redis
        .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", &more])
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = d.log();
        if log.matches("is not a level").count() >= 2 {
            break log;
        }
        assert!(Instant::now() < deadline, "not followed:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let later: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("is not a level"))
        .collect();
    assert!(
        later
            .iter()
            .all(|l| l.len() < 400 && l.contains("more bytes)")),
        "{later:?}"
    );
}

/// Item 4: CONFIG_DB `PORT|<name>` bytes that are not UTF-8 (in the name,
/// a field, a value) reached APPL_DB with U+FFFD in their place: the
/// start-up push went through a lossy `String`.
#[test]
fn config_db_bytes_reach_appl_db_byte_identical() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let mut config = redis.client(4).unwrap();
    let name: &[u8] = b"Ethernet\xff\xfe0";
    let fields: [(&[u8], &[u8]); 3] = [
        (b"alias", b"etp\xff\xfe1"),
        (b"description\xfe", b"\xff\xfe"),
        (b"mtu", b"9100"),
    ];
    let mut hset: Vec<&[u8]> = vec![b"HSET", b"PORT|Ethernet\xff\xfe0"];
    for (f, v) in &fields {
        hset.extend([*f, *v]);
    }
    assert!(config.call(&hset).unwrap().error().is_none());
    let d = Daemon::start(&ns, &redis);
    d.wait_ready();
    let mut appl = redis.client(0).unwrap();
    let staged = [&b"_PORT_TABLE:"[..], name].concat();
    let got = appl.call(&[b"HGETALL", &staged]).unwrap();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = got
        .items()
        .chunks_exact(2)
        .map(|kv| {
            (
                kv[0].as_bytes().unwrap().to_vec(),
                kv[1].as_bytes().unwrap().to_vec(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = fields
        .iter()
        .map(|(f, v)| (f.to_vec(), v.to_vec()))
        .collect();
    want.sort();
    assert_eq!(got, want, "log:\n{}", d.log());
    let member = appl
        .call(&[b"SISMEMBER", b"PORT_TABLE_KEY_SET", name])
        .unwrap();
    assert_eq!(member.as_int(), Some(1));
}

/// The daemon's TCP connections to Redis, from `CLIENT LIST` (the test's
/// own client uses the unix socket).
fn tcp_clients(redis: &RedisServer) -> usize {
    let list = redis.cmd(0, &["CLIENT", "LIST"]).unwrap();
    let list = list.as_string().unwrap_or_default();
    list.lines()
        .filter(|l| l.contains("addr=127.0.0.1:"))
        .count()
}

fn wait_tcp_clients(redis: &RedisServer, d: &Daemon, n: usize) {
    let deadline = Instant::now() + WAIT;
    while tcp_clients(redis) < n {
        assert!(
            Instant::now() < deadline,
            "no {n} connections; log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item 1: a Redis `hostname` that is a name was resolved by
/// `getaddrinfo` on the loop thread at every (re)connect: with a DNS
/// server that does not answer, the loop stood still for the resolver's
/// timeouts (8 s here), `/healthz` said 503 and no link event was read.
/// Now names are resolved on a helper thread: the loop keeps turning, the
/// failure is a clear retrying error, and the connection comes back once
/// the name resolves again.
///
/// The daemon runs in a private mount namespace whose `/etc/hosts` and
/// `/etc/resolv.conf` are the test's, next to a "DNS server" inside the
/// network namespace that never answers.
#[test]
fn a_host_name_is_resolved_off_the_loop_and_a_dead_resolver_stalls_nothing() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start_with(RedisOptions {
        netns: Some(ns.name.clone()),
        ..Default::default()
    })
    .unwrap();
    let files = TempDir::new().unwrap();
    let hosts = files.path().join("hosts");
    let resolv = files.path().join("resolv.conf");
    std::fs::write(&hosts, "127.0.0.1 redis-test-host\n").unwrap();
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.53\noptions timeout:4 attempts:2\n",
    )
    .unwrap();
    let silent_dns = in_netns(&ns.name, || UdpSocket::bind("127.0.0.53:53").unwrap());
    let db = files.path().join("database_config.json");
    std::fs::write(
        &db,
        format!(
            r#"{{"INSTANCES": {{"redis": {{"hostname": "redis-test-host", "port": {}}}}},
  "DATABASES": {{
    "APPL_DB": {{"id": 0, "separator": ":", "instance": "redis"}},
    "CONFIG_DB": {{"id": 4, "separator": "|", "instance": "redis"}},
    "STATE_DB": {{"id": 6, "separator": "|", "instance": "redis"}}
  }}, "VERSION": "1.0"}}"#,
            redis.port
        ),
    )
    .unwrap();
    let mount = format!(
        "mount --bind {} /etc/hosts && mount --bind {} /etc/resolv.conf && exec \"$@\"",
        hosts.display(),
        resolv.display()
    );
    let mut opts = DaemonOptions {
        wrap: vec![
            "unshare".into(),
            "-m".into(),
            "sh".into(),
            "-c".into(),
            mount,
            "sh".into(),
        ],
        ..Default::default()
    };
    opts.sets
        .push(format!("redis.database_config={}", db.display()));
    opts.sets.push("metrics.listen=127.0.0.1:29101".into());
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    // STATE_DB, APPL_DB and APPL_DB events, over TCP to the named host.
    wait_tcp_clients(&redis, &d, 3);

    // The name stops resolving through the file: it goes to the dead DNS.
    std::fs::write(&hosts, "# nothing\n").unwrap();
    redis.cmd(0, &["CLIENT", "KILL", "TYPE", "normal"]).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], 29101));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        let r = http_raw(&ns, addr, b"GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(
            r.status,
            200,
            "the loop stalled {:?} after the names stopped resolving; log:\n{}",
            started.elapsed(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = d.wait_log("cannot resolve redis-test-host");
    assert!(log.contains("retrying"), "{log}");
    assert!(d.alive());

    // Back in the file: the connections come back.
    std::fs::write(&hosts, "127.0.0.1 redis-test-host\n").unwrap();
    wait_tcp_clients(&redis, &d, 3);
    drop(silent_dns);
    d.stop();
}

/// The daemon's own Redis connections (all but the one asking).
fn daemon_clients(redis: &RedisServer) -> usize {
    let list = redis.cmd(0, &["CLIENT", "LIST"]).unwrap();
    list.as_string().unwrap_or_default().lines().count() - 1
}

/// Close every connection the daemon has (normal and pub/sub).
fn kill_clients(redis: &RedisServer) {
    for kind in ["normal", "pubsub"] {
        redis.cmd(0, &["CLIENT", "KILL", "TYPE", kind]).unwrap();
    }
}

fn set_nofile(pid: i32, n: usize) {
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={n}:"))
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {out:?}");
}

/// Item 2: with `nofile` (the soft limit, lowered on the running daemon) too low, a Redis connection that was lost could
/// not be opened again (EMFILE), the metrics endpoint could not accept,
/// and nothing said so but a warning per attempt. Now each need short of
/// fds is logged once, counted, and `/healthz` answers 503 naming it —
/// answered on a spare fd kept for that — until the limit is raised.
#[test]
fn out_of_fds_is_counted_logged_once_and_healthz_says_503_until_it_passes() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let mut opts = DaemonOptions::default();
    opts.sets.push("metrics.listen=127.0.0.1:29101".into());
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    // Each failed connect sends a STATUS= line to the notify socket, whose
    // sendto blocks the loop once the queue is full (runtime/notify.rs):
    // read them as systemd would.
    let drain_notify =
        |d: &Daemon| d.notify_messages(None, Instant::now() + Duration::from_millis(20));
    let wait_clients = |d: &Daemon, n: usize| {
        let deadline = Instant::now() + WAIT;
        while daemon_clients(&redis) != n {
            assert!(
                Instant::now() < deadline,
                "not {n} connections:\n{}",
                d.log()
            );
            drain_notify(d);
        }
    };
    wait_clients(&d, 3);
    let pid = d.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // Lower the limit (a real RLIMIT_NOFILE) and make the daemon reopen its
    // connections, until it no longer can.
    let mut limit = open;
    'lower: loop {
        limit -= 1;
        assert!(
            limit + 4 > open,
            "never short of fds at {limit}:\n{}",
            d.log()
        );
        set_nofile(pid, limit);
        kill_clients(&redis);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if d.log().contains("cannot open a socket") {
                break 'lower;
            }
            drain_notify(&d);
        }
    }
    // Several retries later: still one line per need.
    let later = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < later {
        drain_notify(&d);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], 29101));
    let r = http_raw(&ns, addr, b"GET /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 503, "{r:?}\n{}", d.log());
    assert!(
        r.body.contains("file descriptors exhausted") && r.body.contains("Too many open files"),
        "{r:?}"
    );
    let log = d.log();
    let lines = log.matches("cannot open a socket").count();
    assert!((1..=4).contains(&lines), "{lines} lines:\n{log}");

    set_nofile(pid, 1024);
    wait_clients(&d, 3);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http_raw(&ns, addr, b"GET /healthz HTTP/1.1\r\n\r\n");
        if r.status == 200 {
            break;
        }
        // The endpoint itself is short until its next accept: this one.
        assert!(Instant::now() < deadline, "{r:?}\n{}", d.log());
        drain_notify(&d);
    }
    let m = util::metrics::scrape(&ns, addr);
    assert!(m.int("portsyncd_fd_exhausted_total") > 0);
    assert!(d.log().contains("file descriptors available again"));
    d.stop();
}
