//! Core sync: the real binary, a real redis-server, real kernel links in a
//! private network namespace.

mod util;

use util::{state_fields, Daemon, DaemonOptions, Netns, RedisOptions, RedisServer};

/// Start Redis and the daemon with `ports` configured and popped into
/// APPL_DB PORT_TABLE by the orchagent step; the netdevs are not created.
fn setup(ports: &[&str]) -> (Netns, RedisServer, Daemon) {
    setup_with(ports, RedisOptions::default(), DaemonOptions::default())
}

fn setup_with(
    ports: &[&str],
    ropts: RedisOptions,
    dopts: DaemonOptions,
) -> (Netns, RedisServer, Daemon) {
    let ns = Netns::new().unwrap();
    let ropts = RedisOptions {
        netns: if dopts.unix {
            None
        } else {
            Some(ns.name.clone())
        },
        ..ropts
    };
    let redis = RedisServer::start_with(ropts).unwrap();
    redis.configure_ports(ports).unwrap();
    let daemon = Daemon::start_with(&ns, &redis, dopts);
    daemon.wait_ready();
    let mut popped = redis.orchagent_pop().unwrap();
    popped.retain(|k| !k.starts_with("Port"));
    let mut want: Vec<String> = ports.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(popped, want);
    (ns, redis, daemon)
}

#[test]
fn up_down_mtu_and_delete_reach_state_db() {
    let (ns, redis, _d) = setup(&["Ethernet0", "Ethernet4"]);
    ns.add_port("Ethernet0").unwrap();
    ns.add_port("Ethernet4").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    redis.wait_state("Ethernet4", "down", "down", 1500).unwrap();

    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    ns.set_mtu("Ethernet0", 9100).unwrap();
    redis.wait_state("Ethernet0", "up", "up", 9100).unwrap();
    ns.set_down("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 9100).unwrap();
    // The other port was never touched.
    assert_eq!(
        redis.hgetall(6, "PORT_TABLE|Ethernet4").unwrap(),
        state_fields("down", "down", 1500)
    );

    ns.del_port("Ethernet4").unwrap();
    redis.wait_state_absent("Ethernet4").unwrap();
    assert_eq!(
        redis.hgetall(6, "PORT_TABLE|Ethernet0").unwrap(),
        state_fields("down", "down", 9100)
    );
}

#[test]
fn a_netdev_not_in_port_table_is_not_written() {
    let (ns, redis, _d) = setup(&["Ethernet0"]);
    // Ethernet8 has a netdev but no PORT_TABLE entry; Ethernet0 follows it
    // as a marker that the daemon has processed everything before.
    ns.add_port("Ethernet8").unwrap();
    ns.set_up("Ethernet8").unwrap();
    ns.add_port("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    assert!(redis.hgetall(6, "PORT_TABLE|Ethernet8").unwrap().is_empty());
    // Nor are non-port names.
    ns.ip(&["link", "add", "Bridge", "type", "bridge"]).unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    assert_eq!(
        redis.keys(6, "PORT_TABLE|*").unwrap(),
        vec!["PORT_TABLE|Ethernet0".to_string()]
    );
}

fn late_port_table_entry(notify: &'static str) {
    let (ns, redis, _d) = setup_with(
        &["Ethernet0"],
        RedisOptions {
            notify,
            ..Default::default()
        },
        DaemonOptions::default(),
    );
    ns.add_port("Ethernet12").unwrap();
    ns.set_up("Ethernet12").unwrap();
    ns.add_port("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    assert!(redis
        .hgetall(6, "PORT_TABLE|Ethernet12")
        .unwrap()
        .is_empty());
    // Orchagent adds the port later; no further link event happens.
    redis.add_to_port_table("Ethernet12").unwrap();
    redis.wait_state("Ethernet12", "up", "up", 1500).unwrap();
}

#[test]
fn a_port_added_to_port_table_after_its_netdev_gets_its_state_keyspace_events() {
    late_port_table_entry("AKE");
}

#[test]
fn a_port_added_to_port_table_after_its_netdev_gets_its_state_without_keyspace_events() {
    late_port_table_entry("");
}

#[test]
fn sigterm_exits_zero() {
    let (ns, redis, mut d) = setup(&["Ethernet0"]);
    ns.add_port("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
    d.signal(libc::SIGTERM);
    d.wait_notify("STOPPING=1");
    let status = d.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}

#[test]
fn sigint_exits_zero() {
    let (_ns, _redis, mut d) = setup(&[]);
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit().code(), Some(0));
}

#[test]
fn tcp_when_the_unix_socket_is_absent() {
    let (ns, redis, d) = setup_with(
        &["Ethernet0"],
        RedisOptions::default(),
        DaemonOptions {
            unix: false,
            ..Default::default()
        },
    );
    ns.add_port("Ethernet0").unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    // The daemon's connections are TCP: CLIENT LIST shows their addresses.
    let list = redis
        .client(0)
        .unwrap()
        .cmd(&["CLIENT", "LIST"])
        .unwrap()
        .as_string()
        .unwrap();
    assert!(
        list.lines()
            .filter(|l| l.contains("addr=127.0.0.1:"))
            .count()
            >= 2,
        "{list}\n{}",
        d.log()
    );
}

#[test]
fn a_burst_ends_with_every_port_right() {
    let names: Vec<String> = (0..16).map(|i| format!("Ethernet{}", i * 4)).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (ns, redis, _d) = setup(&refs);
    for n in &names {
        ns.add_port(n).unwrap();
    }
    for round in 0..5 {
        for n in &names {
            if round % 2 == 0 {
                ns.set_up(n).unwrap()
            } else {
                ns.set_down(n).unwrap()
            }
        }
    }
    ns.set_mtu("Ethernet60", 9000).unwrap();
    for n in &names {
        let (admin, oper, mtu) = ns.link_state(n).unwrap();
        let s = |b| if b { "up" } else { "down" };
        redis.wait_state(n, s(admin), s(oper), mtu).unwrap();
    }
}
