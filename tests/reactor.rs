//! The reactor backends: io_uring when asked (and `auto`), and the fallback
//! to epoll when io_uring is refused — by a real seccomp filter here. The
//! whole integration suite also runs once per backend (TEST_REACTOR).

mod util;

use util::{Daemon, DaemonOptions, Netns, RedisServer};

fn io_uring_available() -> bool {
    // The same check the daemon makes.
    syncd::engine::reactor::uring::UringReactor::new().is_ok()
}

fn run_with(reactor: &str, deny_io_uring: bool) -> String {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    let opts = DaemonOptions {
        sets: vec![
            "metrics.listen=".into(),
            format!("runtime.reactor={reactor}"),
        ],
        deny_io_uring,
        ..Default::default()
    };
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    ns.add_port("Ethernet0").unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    ns.set_mtu("Ethernet0", 9100).unwrap();
    redis.wait_state("Ethernet0", "up", "up", 9100).unwrap();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));
    d.log()
}

#[test]
fn io_uring_when_asked() {
    if !io_uring_available() {
        eprintln!("io_uring is refused on this machine: skipped (the fallback test covers it)");
        return;
    }
    let log = run_with("io_uring", false);
    assert!(log.contains("reactor io_uring"), "{log}");
}

#[test]
fn auto_picks_io_uring_and_says_so() {
    if !io_uring_available() {
        eprintln!("io_uring is refused on this machine: skipped");
        return;
    }
    let log = run_with("auto", false);
    assert!(
        log.contains("runtime.reactor = auto: using io_uring"),
        "{log}"
    );
}

#[test]
fn refused_io_uring_falls_back_to_epoll_with_a_warning() {
    let log = run_with("io_uring", true);
    assert!(
        log.contains("runtime.reactor = io_uring: refused by the kernel"),
        "{log}"
    );
    assert!(
        log.contains("falling back to epoll") && log.contains("reactor epoll"),
        "{log}"
    );
    let log = run_with("auto", true);
    assert!(
        log.contains("runtime.reactor = auto: using epoll (io_uring unavailable"),
        "{log}"
    );
}
