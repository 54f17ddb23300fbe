//! Hot-path robustness with real parts: netlink overruns (ENOBUFS) while
//! the daemon is stopped, datagrams larger than the receive ring, ports
//! deleted during an overflow gap; and the runtime placement options.

mod util;

use util::*;

fn start_daemon(ns: &Netns, redis: &RedisServer, names: &[String], sets: &[&str]) -> Daemon {
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    redis.configure_ports(&refs).unwrap();
    let mut opts = DaemonOptions::default();
    opts.sets.extend(sets.iter().map(|s| s.to_string()));
    let d = Daemon::start_with(ns, redis, opts);
    d.wait_ready();
    redis.orchagent_pop().unwrap();
    d
}

#[test]
fn overrun_while_stopped_is_resynced_and_ports_deleted_in_the_gap_are_removed() {
    let names = port_names(32);
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    // The smallest receive buffer: a few messages overflow it.
    let mut d = start_daemon(&ns, &redis, &names, &["netlink.rcvbuf_bytes=4096"]);
    for n in &names {
        ns.add_port(n).unwrap();
    }
    wait_converged(&ns, &redis, &names);

    // Freeze the daemon and make the kernel drop messages.
    d.signal(libc::SIGSTOP);
    let mut burst = Vec::new();
    for round in 0..6 {
        for n in &names {
            burst.push(format!(
                "link set {n} {}",
                if round % 2 == 0 { "up" } else { "down" }
            ));
        }
    }
    for n in names.iter().step_by(3) {
        burst.push(format!("link set {n} mtu 9000"));
    }
    // Deleted in the gap, after the buffer is long full: their DELLINK is lost.
    burst.push("link del Ethernet0".into());
    burst.push("link del Ethernet4".into());
    ns.batch(&burst).unwrap();
    d.signal(libc::SIGCONT);

    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert!(
        total(&log, "enobufs") > 0,
        "no overrun happened; log:\n{log}"
    );
    assert!(total(&log, "resyncs") > 0);
    assert!(
        total(&log, "vanished") >= 1,
        "the deletes were not found by the resync dump:\n{log}"
    );
    assert!(log.contains("ENOBUFS"));
}

#[test]
fn datagrams_larger_than_the_ring_are_read_whole() {
    // A ring smaller than one link message (~1.5 KB), and a warm start so
    // the initial dump (several messages packed per datagram) is synced too.
    let names = port_names(24);
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    enable_warm_restart(&redis, 0);
    for n in &names {
        redis.add_to_port_table(n).unwrap();
        ns.add_port(n).unwrap();
        ns.set_up(n).unwrap();
    }
    let mut d = start_daemon(&ns, &redis, &names, &["netlink.ring_bytes=1024"]);
    wait_converged(&ns, &redis, &names);
    // And the ring still works for ordinary messages afterwards.
    ns.set_mtu("Ethernet8", 9100).unwrap();
    wait_converged(&ns, &redis, &names);
    let log = d.stop();
    assert!(
        total(&log, "truncations") > 0,
        "no datagram exceeded the ring:\n{log}"
    );
    assert_eq!(total(&log, "malformed"), 0);
}

/// A field of `/proc/<pid>/task/<tid>/<file>` such as `Cpus_allowed_list`.
fn proc_field(path: &str, field: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .map(|v| v.trim().trim_start_matches(':').trim().to_string())
        })
        .unwrap_or_else(|| panic!("{field} not in {path}"))
}

#[test]
fn loop_thread_is_pinned_real_time_and_locked_the_metrics_thread_is_not() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let cpu = (syncd::engine::runtime::config::available_cpus() - 1).to_string();
    let opts = DaemonOptions {
        sets: vec![
            "metrics.listen=".into(),
            format!("runtime.cpu={cpu}"),
            "runtime.sched=fifo:10".into(),
            "runtime.mlock_all=true".into(),
            "runtime.strict=true".into(),
        ],
        ..Default::default()
    };
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    let pid = d.pid();
    let main = format!("/proc/{pid}/task/{pid}");
    assert_eq!(
        proc_field(&format!("{main}/status"), "Cpus_allowed_list"),
        cpu
    );
    // sched_getscheduler through chrt: "SCHED_FIFO" and priority 10.
    let chrt = std::process::Command::new("chrt")
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    let chrt = String::from_utf8_lossy(&chrt.stdout);
    assert!(
        chrt.contains("SCHED_FIFO") && chrt.contains(": 10"),
        "{chrt}"
    );
    let locked: u64 = proc_field(&format!("/proc/{pid}/status"), "VmLck")
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    assert!(locked > 0);
    // The metrics thread was spawned before the loop pinned itself.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap();
        if comm.starts_with("portsyncd-metr") {
            assert_ne!(
                proc_field(
                    &task.join("status").display().to_string(),
                    "Cpus_allowed_list"
                ),
                cpu
            );
            let policy = proc_field(&task.join("sched").display().to_string(), "policy");
            assert_eq!(policy, "0", "metrics thread must stay SCHED_OTHER");
        }
    }
    d.stop();
}

fn without_caps() -> Vec<String> {
    vec![
        "setpriv".into(),
        "--bounding-set=-sys_nice,-ipc_lock".into(),
    ]
}

#[test]
fn refused_placement_warns_naming_the_capability() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let opts = DaemonOptions {
        sets: vec![
            "metrics.listen=".into(),
            "runtime.sched=fifo:10".into(),
            "runtime.mlock_all=true".into(),
        ],
        wrap: without_caps(),
        ..Default::default()
    };
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    let log = d.stop();
    assert!(
        log.contains("runtime.sched = fifo:10: refused") && log.contains("CAP_SYS_NICE"),
        "{log}"
    );
    assert!(
        log.contains("runtime.mlock_all = true: refused") && log.contains("CAP_IPC_LOCK"),
        "{log}"
    );
}

#[test]
fn refused_placement_under_strict_exits_2() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let opts = DaemonOptions {
        sets: vec![
            "metrics.listen=".into(),
            "runtime.sched=rr:5".into(),
            "runtime.strict=true".into(),
        ],
        wrap: without_caps(),
        ..Default::default()
    };
    let mut d = Daemon::start_with(&ns, &redis, opts);
    assert_eq!(d.wait_exit().code(), Some(2), "{}", d.log());
    assert!(d.log().contains("CAP_SYS_NICE"));
}

/// Run `f` on a thread that has entered namespace `ns` (sockets it opens
/// live there).
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a valid namespace fd; it only moves this thread.
        let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_datagram_cut_by_a_small_slot_is_counted_and_the_reader_then_peeks() {
    use syncd::engine::metrics::Counters;
    use syncd::engine::netlink::reader::{LinkReader, Read};
    use syncd::engine::netlink::ring::RecvRing;
    use syncd::engine::netlink::socket::NetlinkSocket;

    let ns = Netns::new().unwrap();
    let name = ns.name.clone();
    in_netns(&ns, move || {
        let (sock, _) = NetlinkSocket::events(1 << 20).unwrap();
        // Batch mode with 512-byte slots: a veth RTM_NEWLINK (~1.5 KB) is cut.
        let mut reader = LinkReader::with_slot(sock, RecvRing::new(64 << 10).unwrap(), 512);
        assert!(!reader.peeking());
        let ip = |args: &[&str]| {
            let ok = std::process::Command::new("ip")
                .arg("-n")
                .arg(&name)
                .args(args)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        ip(&[
            "link",
            "add",
            "Ethernet0",
            "type",
            "veth",
            "peer",
            "name",
            "p0",
        ]);
        let counters = Counters::default();
        let read = reader.read(&counters).unwrap();
        let Read::Datagrams {
            count, truncated, ..
        } = read
        else {
            panic!("{read:?}")
        };
        assert_eq!(count, 0, "every datagram was larger than a slot");
        assert!(truncated >= 1);
        assert_eq!(counters.truncations.get(), truncated as u64);
        assert!(reader.peeking(), "after a cut the reader peeks for good");
        // The next message is read whole.
        ip(&["link", "set", "Ethernet0", "mtu", "1400"]);
        loop {
            match reader.read(&counters).unwrap() {
                Read::Datagrams {
                    count: 1,
                    truncated: 0,
                    ..
                } => {
                    let d = reader.datagram(0);
                    let (h, p) = syncd::engine::netlink::parse::messages(d)
                        .next()
                        .unwrap()
                        .unwrap();
                    if let Ok(syncd::engine::netlink::parse::Event::Link(l)) =
                        syncd::engine::netlink::parse::parse_event(&h, p)
                    {
                        if l.name == b"Ethernet0" && l.mtu == Some(1400) {
                            break;
                        }
                    }
                }
                Read::Datagrams { .. } => {}
                other => panic!("{other:?}"),
            }
        }
    });
}
