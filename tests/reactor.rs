//! The reactor backends: io_uring when asked (and `auto`), and the fallback
//! to epoll when io_uring is refused — by a real seccomp filter here. The
//! whole integration suite also runs once per backend (TEST_REACTOR).

mod util;

use util::{Daemon, DaemonOptions, Netns, RedisServer};

fn io_uring_available() -> bool {
    // The same check the daemon makes.
    syncd::engine::reactor::uring::UringReactor::new().is_ok()
}

/// portsyncd on `reactor` (plus `sets`), ready, with `Ethernet0` up in
/// STATE_DB.
fn up_on(reactor: &str, sets: &[&str], deny_io_uring: bool) -> (Netns, RedisServer, Daemon) {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0"]).unwrap();
    let mut all = vec![
        "metrics.listen=".to_string(),
        format!("runtime.reactor={reactor}"),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let opts = DaemonOptions {
        sets: all,
        deny_io_uring,
        ..Default::default()
    };
    let d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    ns.add_port("Ethernet0").unwrap();
    ns.set_up("Ethernet0").unwrap();
    redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
    (ns, redis, d)
}

fn run_with(reactor: &str, deny_io_uring: bool) -> String {
    let (ns, redis, mut d) = up_on(reactor, &[], deny_io_uring);
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

/// With io_uring doing the I/O, the loop thread makes no receive, send or
/// wait call of its own while ports change: everything is one
/// `io_uring_enter` per turn. strace (without -f) follows only the loop
/// thread, whose id is the process id.
#[test]
fn io_uring_does_the_loops_io() {
    if !io_uring_available() {
        eprintln!("io_uring is refused on this machine: skipped");
        return;
    }
    // No dump after start-up: only the changes below are traced.
    let (ns, redis, mut d) = up_on("io_uring", &["verify.interval_s=0"], false);

    let summary = std::env::temp_dir().join(format!("strace-uring-{}.txt", std::process::id()));
    let mut strace = std::process::Command::new("strace")
        .args(["-c", "-qq", "-o"])
        .arg(&summary)
        .args(["-p", &d.pid().to_string()])
        .spawn()
        .expect("strace (tools/install-deps installs it)");
    // strace is attached once the loop thread is traced: wait for that.
    let status = format!("/proc/{}/status", d.pid());
    let traced = || {
        std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !traced() {
        assert!(
            std::time::Instant::now() < deadline,
            "strace never attached"
        );
        std::thread::yield_now();
    }
    for mtu in 1600..1620 {
        ns.set_mtu("Ethernet0", mtu).unwrap();
        redis.wait_state("Ethernet0", "up", "up", mtu).unwrap();
    }
    // SAFETY: kill(2) on strace's own pid, a child we have not reaped.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    strace.wait().unwrap();
    let text = std::fs::read_to_string(&summary).unwrap();
    let _ = std::fs::remove_file(&summary);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit().code(), Some(0));

    // strace -c: "% time seconds usecs/call calls errors syscall" rows.
    let calls = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.split_whitespace().last() == Some(name))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(3).and_then(|c| c.parse::<u64>().ok())
            })
            .sum()
    };
    assert!(calls("io_uring_enter") >= 20, "{text}");
    for socket_call in [
        "recvmmsg",
        "recvmsg",
        "recvfrom",
        "sendto",
        "sendmsg",
        "epoll_wait",
        "epoll_pwait",
        "clock_nanosleep",
    ] {
        assert_eq!(
            calls(socket_call),
            0,
            "{socket_call} on the loop thread:\n{text}"
        );
    }
}
