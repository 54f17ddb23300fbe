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
