//! Logging and SIGHUP: SONiC's CONFIG_DB LOGGER|portsyncd LOGLEVEL (created
//! when absent, followed live), and reloading the configuration.

mod util;

use util::{Daemon, Netns, RedisServer};

fn start() -> (Netns, RedisServer, Daemon) {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let d = Daemon::start(&ns, &redis);
    d.wait_ready();
    (ns, redis, d)
}

#[test]
fn logger_entry_is_created_like_sonics_daemons_do() {
    let (_ns, redis, _d) = start();
    // The harness runs the daemon at log.level = info.
    assert_eq!(
        redis.hgetall(4, "LOGGER|portsyncd").unwrap(),
        vec![
            ("LOGLEVEL".to_string(), "INFO".to_string()),
            ("LOGOUTPUT".to_string(), "SYSLOG".to_string())
        ]
    );
}

#[test]
fn an_existing_loglevel_wins_and_changes_are_followed_live() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis
        .cmd(
            4,
            &[
                "HSET",
                "LOGGER|portsyncd",
                "LOGLEVEL",
                "DEBUG",
                "LOGOUTPUT",
                "SYSLOG",
            ],
        )
        .unwrap();
    let d = Daemon::start(&ns, &redis);
    d.wait_ready();
    // The harness asks for INFO; CONFIG_DB says DEBUG and wins.
    d.wait_log("log level DEBUG (CONFIG_DB LOGGER|portsyncd)");
    redis
        .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "ERROR"])
        .unwrap();
    d.wait_log("log level ERROR (CONFIG_DB LOGGER|portsyncd)");
    // At ERROR, a NOTICE line only appears if the next change took effect.
    redis
        .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", "NOTICE"])
        .unwrap();
    d.wait_log("log level NOTICE (CONFIG_DB LOGGER|portsyncd)");
    assert_eq!(redis.hgetall(4, "LOGGER|portsyncd").unwrap()[0].1, "NOTICE");
}

#[test]
fn sighup_applies_what_it_can_and_names_what_needs_a_restart() {
    let (_ns, _redis, mut d) = start();
    std::fs::write(
        d.config_path(),
        "[metrics]\nlog_interval_s = 5\n[netlink]\nrcvbuf_bytes = 1048576\n",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    let log = d.wait_log("SIGHUP: configuration reloaded");
    assert!(
        log.contains("not reloaded, restart to apply: netlink.rcvbuf_bytes"),
        "{log}"
    );
    assert!(log.contains("applied metrics.log_interval_s"), "{log}");
    // A broken file is refused and the daemon runs on.
    std::fs::write(d.config_path(), "[netlink]\nrcvbuf_bytes = \"lots\"\n").unwrap();
    d.signal(libc::SIGHUP);
    let log = d.wait_log("SIGHUP: configuration not reloaded");
    assert!(log.contains("rcvbuf_bytes"), "{log}");
    assert!(d.alive());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
}

/// Issue 14 item 3: each port change is a NOTICE line
/// (`Ethernet0: oper up→down, admin up, mtu 9100`), the flap history
/// operators grep for; written off the loop and at most one a second per
/// port, the next line saying how many were left out.
#[test]
fn port_changes_are_notice_lines_at_most_one_a_second_per_port() {
    let (ns, redis, mut d) = start();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    redis.add_to_port_table("Ethernet0").unwrap();
    ns.add_port("Ethernet0").unwrap();
    d.wait_log("Ethernet0: netdev created, oper down, admin down, mtu 1500");
    // 40 changes in a burst: far fewer lines.
    let burst: Vec<String> = (0..20)
        .flat_map(|_| {
            [
                "link set Ethernet0 mtu 9000".to_string(),
                "link set Ethernet0 mtu 1500".to_string(),
            ]
        })
        .collect();
    ns.batch(&burst).unwrap();
    // A change a while later gets a line again, naming what was left out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut mtu = 1500;
    let log = loop {
        mtu = if mtu == 1500 { 1400 } else { 1500 };
        ns.set_mtu("Ethernet0", mtu).unwrap();
        let log = d.log();
        if log.contains("earlier changes not logged") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" Ethernet0: ")).collect();
    let later = lines
        .iter()
        .find(|l| l.contains("earlier changes not logged"))
        .unwrap_or_else(|| panic!("no line names what it left out:\n{log}"));
    assert!(
        later.contains("NOTICE Ethernet0: oper down, admin down, mtu 1400→1500")
            || later.contains("NOTICE Ethernet0: oper down, admin down, mtu 1500→1400"),
        "{later}"
    );
    assert!(
        lines.len() < 20,
        "{} lines for 40+ changes:\n{log}",
        lines.len()
    );
    d.stop();
}
