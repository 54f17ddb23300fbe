//! Redis faults with real parts: connections killed mid-burst, Redis
//! restarted while ports change, Redis absent at start, SCRIPT FLUSH, and a
//! Redis that stops reading. Each ends with STATE_DB equal to the kernel's
//! state and the daemon alive.

mod util;

use util::*;

/// Flip every port `rounds` times in one `ip -batch` (a burst).
fn flap(ns: &Netns, names: &[String], rounds: usize, start_up: bool) {
    let mut cmds = Vec::new();
    for r in 0..rounds {
        let up = (r % 2 == 0) == start_up;
        for n in names {
            cmds.push(format!("link set {n} {}", if up { "up" } else { "down" }));
        }
    }
    ns.batch(&cmds).unwrap();
}

fn setup(names: &[String], ropts: RedisOptions, sets: &[&str]) -> (Netns, RedisServer, Daemon) {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start_with(ropts).unwrap();
    redis.configure_ports(&refs(names)).unwrap();
    let mut opts = DaemonOptions::default();
    opts.sets.extend(sets.iter().map(|s| s.to_string()));
    let d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    for n in names {
        ns.add_port(n).unwrap();
    }
    wait_converged(&ns, &redis, names);
    (ns, redis, d)
}

#[test]
fn connections_killed_mid_burst() {
    let names = port_names(16);
    let (ns, redis, mut d) = setup(&names, RedisOptions::default(), &[]);
    let killer = std::thread::spawn({
        let addr = redis.address();
        move || {
            let mut c = syncd::engine::redis::client::Client::connect(&addr, util::WAIT).unwrap();
            for _ in 0..20 {
                c.cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
                    .unwrap();
                c.cmd(&["CLIENT", "KILL", "TYPE", "pubsub", "SKIPME", "yes"])
                    .unwrap();
            }
        }
    });
    flap(&ns, &names, 9, true);
    killer.join().unwrap();
    // And once more after the burst, so the last write surely lost its connection.
    redis
        .cmd(0, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .unwrap();
    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert!(total(&log, "reconnects") >= 1, "{log}");
}

#[test]
fn redis_restarted_while_ports_change() {
    let names = port_names(8);
    let (ns, mut redis, mut d) = setup(
        &names,
        RedisOptions {
            persist: true,
            ..Default::default()
        },
        &["redis.retry_max_ms=200"],
    );
    redis.stop();
    // Changes while Redis is away: they must land once it is back.
    flap(&ns, &names, 3, true);
    ns.set_mtu("Ethernet4", 9000).unwrap();
    ns.del_port("Ethernet8").unwrap();
    redis.restart().unwrap();
    wait_converged(&ns, &redis, &names);
    // A change after the restart still flows.
    ns.set_down("Ethernet0").unwrap();
    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert!(total(&log, "reconnects") >= 1, "{log}");
}

#[test]
fn redis_absent_at_start() {
    let names = port_names(4);
    let ns = Netns::new().unwrap();
    let mut redis = RedisServer::start_with(RedisOptions {
        persist: true,
        ..Default::default()
    })
    .unwrap();
    redis.configure_ports(&refs(&names)).unwrap();
    redis.stop();
    let mut d = Daemon::start_with(
        &ns,
        &redis,
        DaemonOptions {
            sets: vec!["metrics.listen=".into(), "redis.retry_max_ms=200".into()],
            ..Default::default()
        },
    );
    // It says so, and keeps trying. (With no unix socket file it falls
    // back to TCP, SONiC's rule, and names that address.)
    let status = d.wait_notify("STATUS=waiting for Redis");
    assert!(
        status.contains(&format!("127.0.0.1:{}", redis.port)),
        "{status}"
    );
    d.wait_notify("STATUS=waiting for Redis");
    assert!(d.alive());
    redis.restart().unwrap();
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    for n in &names {
        ns.add_port(n).unwrap();
    }
    ns.set_up("Ethernet0").unwrap();
    wait_converged(&ns, &redis, &names);
    assert!(d.log().contains("waiting for Redis"));
    d.stop();
}

#[test]
fn script_flush_mid_run() {
    let names = port_names(4);
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&refs(&names)).unwrap();
    let mut d = Daemon::start(&ns, &redis);
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    // The script vanishes before PortInitDone is due: its EVALSHA gets
    // NOSCRIPT, and the daemon must load the script again and resend.
    redis.cmd(0, &["SCRIPT", "FLUSH"]).unwrap();
    for n in &names {
        ns.add_port(n).unwrap();
    }
    redis
        .wait_until("PortInitDone", |r| {
            Ok(
                r.cmd(0, &["SISMEMBER", "PORT_TABLE_KEY_SET", "PortInitDone"])?
                    .as_int()
                    == Some(1),
            )
        })
        .unwrap();
    assert_eq!(
        redis.hgetall(0, "_PORT_TABLE:PortInitDone").unwrap(),
        vec![("lanes".into(), "0".into())]
    );
    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert!(log.contains("NOSCRIPT"), "{log}");
}

#[test]
fn redis_that_stops_reading_during_a_burst() {
    // A small write buffer so the bound is reached; the default netlink
    // buffer so that any overrun would be the daemon's fault.
    let names = port_names(32);
    let (ns, redis, mut d) = setup(
        &names,
        RedisOptions::default(),
        &["redis.write_buffer_bytes=65536"],
    );
    redis.cmd(0, &["CLIENT", "PAUSE", "1500", "ALL"]).unwrap();
    flap(&ns, &names, 41, true);
    for n in names.iter().step_by(2) {
        ns.set_mtu(n, 9000).unwrap();
    }
    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert_eq!(
        total(&log, "enobufs"),
        0,
        "a slow Redis made the kernel drop events:\n{log}"
    );
}
