//! Issue 11's smaller items, each against the real binary: what an
//! unrelated environment variable, a Redis host name, a low `nofile`
//! limit, non-UTF-8 CONFIG_DB bytes and a huge CONFIG_DB log level used
//! to do to the daemon.
//!
//! Each test fails on the build before its fix; run one against an older
//! binary with `TEST_PORTSYNCD_BIN=/path/to/old/portsyncd`.

mod util;

use std::process::{Command, Output};

use util::{Daemon, Netns, RedisServer};

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
    let deadline = std::time::Instant::now() + util::WAIT;
    let log = loop {
        let log = d.log();
        if log.matches("is not a level").count() >= 2 {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "not followed:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
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
