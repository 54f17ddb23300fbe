//! SONiC's start-up contract, checked with a real redis-server, real kernel
//! links and the real binary: ProducerStateTable push, PortConfigDone,
//! PortInitDone, warm start, old interfaces, DPU, zero ports, and the
//! command stream against SONiC's own recorded one.

mod util;

use std::time::Instant;

use syncd::engine::redis::client::Client;
use util::{state_fields, Daemon, DaemonOptions, Netns, RedisServer, WAIT};

const FOUR: [&str; 4] = ["Ethernet0", "Ethernet4", "Ethernet8", "Ethernet12"];

fn start(ns: &Netns, redis: &RedisServer) -> Daemon {
    let d = Daemon::start(ns, redis);
    d.wait_ready();
    d
}

fn in_key_set(redis: &RedisServer, key: &str) -> bool {
    redis
        .cmd(0, &["SISMEMBER", "PORT_TABLE_KEY_SET", key])
        .unwrap()
        .as_int()
        == Some(1)
}

#[test]
fn config_db_ports_are_pushed_verbatim_with_port_config_done() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&FOUR).unwrap();
    // An extra field must be copied too.
    redis
        .cmd(4, &["HSET", "PORT|Ethernet8", "description", "to spine 1"])
        .unwrap();
    let _d = start(&ns, &redis);

    for name in FOUR {
        let config = redis.hgetall(4, &format!("PORT|{name}")).unwrap();
        assert!(!config.is_empty());
        assert_eq!(
            redis.hgetall(0, &format!("_PORT_TABLE:{name}")).unwrap(),
            config,
            "{name}"
        );
        assert!(in_key_set(&redis, name));
    }
    assert_eq!(
        redis.hgetall(0, "_PORT_TABLE:PortConfigDone").unwrap(),
        vec![("count".to_string(), "4".to_string())]
    );
    // Orchagent's pop moves them to PORT_TABLE.
    let popped = redis.orchagent_pop().unwrap();
    assert_eq!(
        popped,
        [
            "Ethernet0",
            "Ethernet12",
            "Ethernet4",
            "Ethernet8",
            "PortConfigDone"
        ]
    );
    assert_eq!(
        redis.hgetall(0, "PORT_TABLE:Ethernet8").unwrap(),
        redis.hgetall(4, "PORT|Ethernet8").unwrap()
    );
}

/// Read `n` messages from a SUBSCRIBE connection (deadline `WAIT`).
fn read_messages(sub: &mut Client, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        let v = sub.read_until(deadline).expect("channel message");
        let items = v.items();
        if items.first().and_then(|k| k.as_string()).as_deref() == Some("message") {
            out.push(items[2].as_string().unwrap());
        }
    }
    out
}

#[test]
fn the_channel_is_published_only_for_newly_added_keys() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&FOUR).unwrap();
    let mut sub = Client::connect(&redis.address(), WAIT).unwrap();
    sub.cmd(&["SUBSCRIBE", "PORT_TABLE_CHANNEL@0"]).unwrap();

    let mut first = start(&ns, &redis);
    // Four ports and PortConfigDone, each new in the key set: five "G"s.
    assert_eq!(read_messages(&mut sub, 5), vec!["G"; 5]);
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit().code(), Some(0));

    // A second start before orchagent popped: every key is still in the
    // set, so the script publishes nothing. Then orchagent pops, a port
    // appears, PortInitDone is new: exactly one more "G".
    let _second = start(&ns, &redis);
    assert_eq!(redis.orchagent_pop().unwrap().len(), 5);
    for name in FOUR {
        ns.add_port(name).unwrap();
    }
    redis
        .wait_until("PortInitDone", |r| Ok(in_key_set(r, "PortInitDone")))
        .unwrap();
    let msgs = read_messages(&mut sub, 1);
    assert_eq!(msgs, vec!["G"]);
    // Nothing else was published: a PING through the subscription returns
    // before any further message would (the server answers in order).
    sub.cmd(&["PING"])
        .map(|v| assert_eq!(v.items()[0].as_string().as_deref(), Some("pong")))
        .unwrap();
}

#[test]
fn port_init_done_waits_for_the_last_netdev() {
    let names: Vec<String> = (0..8).map(|i| format!("Ethernet{}", 4 * i)).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&refs).unwrap();
    let _d = start(&ns, &redis);
    redis.orchagent_pop().unwrap();
    let (last, rest) = names.split_last().unwrap();
    for n in rest {
        ns.add_port(n).unwrap();
    }
    // Every port but the last is written: PortInitDone must still be absent.
    for n in rest {
        redis.wait_state(n, "down", "down", 1500).unwrap();
    }
    assert!(!in_key_set(&redis, "PortInitDone"));
    assert!(redis
        .hgetall(0, "_PORT_TABLE:PortInitDone")
        .unwrap()
        .is_empty());
    ns.add_port(last).unwrap();
    redis
        .wait_until("PortInitDone", |r| Ok(in_key_set(r, "PortInitDone")))
        .unwrap();
    assert_eq!(
        redis.hgetall(0, "_PORT_TABLE:PortInitDone").unwrap(),
        vec![("lanes".to_string(), "0".to_string())]
    );
}

#[test]
fn warm_start_increments_restore_count_skips_the_push_and_syncs_existing_netdevs() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0", "Ethernet4"]).unwrap();
    util::enable_warm_restart(&redis, 3);
    // APPL_DB as the previous run left it.
    for n in ["Ethernet0", "Ethernet4"] {
        redis
            .cmd(
                0,
                &[
                    "HSET",
                    &format!("PORT_TABLE:{n}"),
                    "admin_status",
                    "up",
                    "mtu",
                    "9100",
                ],
            )
            .unwrap();
    }
    // The netdevs exist already, one of them up.
    ns.add_port("Ethernet0").unwrap();
    ns.add_port("Ethernet4").unwrap();
    ns.set_up("Ethernet0").unwrap();

    let _d = start(&ns, &redis);
    assert_eq!(
        redis.hgetall(6, "WARM_RESTART_TABLE|portsyncd").unwrap(),
        vec![("restore_count".to_string(), "4".to_string())]
    );
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    redis.wait_state("Ethernet4", "down", "down", 1500).unwrap();
    // Not brought down: warm start has no old interfaces.
    assert!(ns.link_state("Ethernet0").unwrap().0);
    // No push: nothing staged, no PortConfigDone.
    assert!(redis.keys(0, "_PORT_TABLE:Ethernet*").unwrap().is_empty());
    assert!(redis
        .hgetall(0, "_PORT_TABLE:PortConfigDone")
        .unwrap()
        .is_empty());
    assert!(!in_key_set(&redis, "PortConfigDone"));
}

#[test]
fn warm_start_without_restore_count_falls_back_to_cold() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    redis
        .cmd(
            6,
            &["HSET", "WARM_RESTART_ENABLE_TABLE|swss", "enable", "true"],
        )
        .unwrap();
    let _d = start(&ns, &redis);
    assert_eq!(
        redis.hgetall(6, "WARM_RESTART_TABLE|portsyncd").unwrap(),
        vec![("restore_count".to_string(), "0".to_string())]
    );
    assert_eq!(
        redis.hgetall(0, "_PORT_TABLE:PortConfigDone").unwrap(),
        vec![("count".to_string(), "1".to_string())]
    );
}

#[test]
fn cold_start_brings_old_interfaces_down_and_ignores_them_for_good() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis
        .configure_ports(&["Ethernet0", "Ethernet4", "Ethernet8"])
        .unwrap();
    // Left over from a previous run: two Ethernet ports (one up), and a
    // PortChannel, which is not an old interface.
    ns.add_port("Ethernet0").unwrap();
    ns.add_port("Ethernet4").unwrap();
    ns.set_up("Ethernet0").unwrap();
    ns.ip(&["link", "add", "PortChannel1", "type", "bridge"])
        .unwrap();
    ns.set_up("PortChannel1").unwrap();
    assert!(ns.link_state("Ethernet0").unwrap().0);

    let _d = start(&ns, &redis);
    // Brought down by the daemon (a netlink request).
    assert!(!ns.link_state("Ethernet0").unwrap().0);
    assert!(ns.link_state("PortChannel1").unwrap().0);
    redis.orchagent_pop().unwrap();
    // Later messages about them are ignored, even flaps.
    ns.set_up("Ethernet0").unwrap();
    ns.set_mtu("Ethernet4", 9100).unwrap();
    // A new interface is synced; once it is, everything before it was seen.
    ns.add_port("Ethernet8").unwrap();
    redis.wait_state("Ethernet8", "down", "down", 1500).unwrap();
    assert!(redis.hgetall(6, "PORT_TABLE|Ethernet0").unwrap().is_empty());
    assert!(redis.hgetall(6, "PORT_TABLE|Ethernet4").unwrap().is_empty());
    // Deleting an old interface deletes nothing either, and recreating it
    // makes it a new interface (new ifindex).
    ns.del_port("Ethernet4").unwrap();
    ns.add_port("Ethernet4").unwrap();
    redis.wait_state("Ethernet4", "down", "down", 1500).unwrap();
    assert!(redis.hgetall(6, "PORT_TABLE|Ethernet0").unwrap().is_empty());
}

#[test]
fn dpu_has_no_old_interfaces() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    redis
        .cmd(
            4,
            &["HSET", "DEVICE_METADATA|localhost", "switch_type", "dpu"],
        )
        .unwrap();
    redis
        .cmd(0, &["HSET", "PORT_TABLE:Ethernet0", "admin_status", "up"])
        .unwrap();
    ns.add_port("Ethernet0").unwrap();
    ns.set_up("Ethernet0").unwrap();
    let _d = start(&ns, &redis);
    // Left up, and synced.
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    assert!(ns.link_state("Ethernet0").unwrap().0);
}

#[test]
fn zero_ports_is_not_an_error() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let mut d = start(&ns, &redis);
    assert_eq!(
        redis.hgetall(0, "_PORT_TABLE:PortConfigDone").unwrap(),
        vec![("count".to_string(), "0".to_string())]
    );
    redis
        .wait_until("PortInitDone", |r| Ok(in_key_set(r, "PortInitDone")))
        .unwrap();
    // Still running and still syncing.
    redis.add_to_port_table("Ethernet0").unwrap();
    ns.add_port("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    assert!(d.alive());
}

#[test]
fn link_changes_during_start_up_are_not_lost() {
    // Ports created while the daemon starts (before READY) are either old
    // interfaces (existed at the dump) or synced: none may be lost. Use a
    // warm start so that every existing netdev is synced.
    let names: Vec<String> = (0..32).map(|i| format!("Ethernet{}", 4 * i)).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&refs).unwrap();
    util::enable_warm_restart(&redis, 0);
    for n in &names {
        redis.add_to_port_table(n).unwrap();
    }
    let d = Daemon::start_with(&ns, &redis, DaemonOptions::default());
    for n in &names {
        ns.add_port(n).unwrap();
        ns.set_up(n).unwrap();
    }
    d.wait_ready();
    for n in &names {
        redis.wait_state(n, "up", "up", 1500).unwrap();
    }
}

/// The quoted arguments of one `MONITOR` line.
fn monitor_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(start) = line.find('"') else {
        return out;
    };
    let mut chars = line[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut arg = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => arg.push('\n'),
                    Some(c) => arg.push(c),
                    None => {}
                },
                '"' => break,
                c => arg.push(c),
            }
        }
        out.push(arg);
    }
    out
}

const REFERENCE_MONITOR: &str =
    include_str!("fixtures/sonic-reference/reference-monitor-4ports.txt");
const REFERENCE_DB: &str = include_str!("fixtures/sonic-reference/reference-db-after-flaps.txt");

/// Commands from a MONITOR capture that a consumer sees: ProducerStateTable
/// EVALSHAs and STATE_DB port writes.
fn contract_commands(lines: impl Iterator<Item = String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = lines
        .map(|l| monitor_args(&l))
        .filter(|a| match a.first().map(|s| s.as_str()) {
            Some("EVALSHA") => true,
            Some("HSET") | Some("DEL") => a.get(1).is_some_and(|k| k.starts_with("PORT_TABLE|")),
            _ => false,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A `reference-db-*.txt` section as sorted lines, without CONFIG_DB's
/// LOGGER entry and DEVICE_METADATA (test-specific).
fn db_section(text: &str, db: u32) -> Vec<String> {
    let mut in_db = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("===== db ") {
            in_db = n.trim() == db.to_string();
            continue;
        }
        if in_db && !line.is_empty() {
            // Field order inside a hash is not part of the contract.
            let (key, rest) = line.split_once(" [").unwrap();
            let (kind, fields) = rest
                .split_once("] ")
                .unwrap_or((rest.trim_end_matches(']'), ""));
            let mut pairs: Vec<&str> = fields.split(' ').collect();
            if kind == "hash" {
                let mut kv: Vec<String> = pairs.chunks(2).map(|c| c.join(" ")).collect();
                kv.sort();
                out.push(format!("{key} [{kind}] {}", kv.join(" ")));
            } else {
                pairs.sort();
                out.push(format!("{key} [{kind}] {}", pairs.join(" ")));
            }
        }
    }
    out.sort();
    out
}

/// The same rendering of our Redis.
fn dump_db(redis: &RedisServer, db: u32) -> String {
    let mut text = format!("===== db {db}\n");
    for key in redis.keys(db, "*").unwrap() {
        let kind = redis.cmd(db, &["TYPE", &key]).unwrap().as_string().unwrap();
        let fields = match kind.as_str() {
            "hash" => redis
                .hgetall(db, &key)
                .unwrap()
                .into_iter()
                .map(|(f, v)| format!("{f} {v}"))
                .collect::<Vec<_>>(),
            "set" => util::strings(&redis.cmd(db, &["SMEMBERS", &key]).unwrap()),
            other => vec![format!("<{other}>")],
        };
        text.push_str(&format!("{key} [{kind}] {}\n", fields.join(" ")));
    }
    text
}

#[test]
fn the_redis_contract_matches_sonics_recorded_run() {
    // SONiC's recorded scenario: 4 ports, cold start, orchagent pops, the
    // netdevs appear and come up; then Ethernet0 down, up, mtu 9100, and
    // `ip link del Ethernet4`.
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&FOUR).unwrap();
    let mut monitor = Client::connect(&redis.address(), WAIT).unwrap();
    monitor.cmd(&["MONITOR"]).unwrap();

    let _d = start(&ns, &redis);
    redis.orchagent_pop().unwrap();
    for n in FOUR {
        ns.add_port(n).unwrap();
        ns.set_up(n).unwrap();
    }
    for n in FOUR {
        redis.wait_state(n, "up", "up", 1500).unwrap();
    }
    ns.set_down("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    ns.set_mtu("Ethernet0", 9100).unwrap();
    redis.wait_state("Ethernet0", "up", "up", 9100).unwrap();
    ns.del_port("Ethernet4").unwrap();
    redis.wait_state_absent("Ethernet4").unwrap();

    // Final databases equal SONiC's (APPL_DB and STATE_DB).
    let ours = dump_db(&redis, 0) + &dump_db(&redis, 6);
    assert_eq!(db_section(&ours, 0), db_section(REFERENCE_DB, 0));
    assert_eq!(db_section(&ours, 6), db_section(REFERENCE_DB, 6));

    // Every ProducerStateTable EVALSHA SONiC sent, we sent byte for byte
    // (order aside), and nothing else. Every STATE_DB write of ours is one
    // SONiC also sent in the same scenario: we may skip intermediate states
    // by coalescing, never invent one. Read MONITOR up to a marker command.
    redis.cmd(0, &["ECHO", "end-of-scenario"]).unwrap();
    let mut lines = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let v = monitor.read_until(deadline).expect("MONITOR line");
        let line = v.as_string().unwrap_or_default();
        if line.contains("\"end-of-scenario\"") {
            break;
        }
        lines.push(line);
    }
    let ours = contract_commands(lines.into_iter());
    let theirs = contract_commands(REFERENCE_MONITOR.lines().map(String::from));
    let evalsha = |v: &Vec<Vec<String>>| {
        v.iter()
            .filter(|a| a[0] == "EVALSHA")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(evalsha(&ours), evalsha(&theirs));
    for cmd in ours.iter().filter(|a| a[0] != "EVALSHA") {
        assert!(theirs.contains(cmd), "we sent {cmd:?}, SONiC never did");
    }
    assert!(ours.iter().any(|a| a == &["DEL", "PORT_TABLE|Ethernet4"]));
    assert_eq!(
        redis.hgetall(6, "PORT_TABLE|Ethernet0").unwrap(),
        state_fields("up", "up", 9100)
    );
}
