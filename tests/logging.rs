//! Logging and SIGHUP: SONiC's CONFIG_DB LOGGER|<daemon> LOGLEVEL and
//! LOGOUTPUT (registered when absent, followed live), syslog datagrams on a
//! real `/dev/log`, and reloading the configuration. What SONiC expects of
//! every daemon's logging is checked for each daemon we ship.

mod util;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use util::metrics::{in_netns, scrape};
use util::{Daemon, Netns, RedisServer, Syncd, TempDir, WAIT};

fn start() -> (Netns, RedisServer, Daemon) {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let d = Daemon::start(&ns, &redis);
    d.wait_ready();
    (ns, redis, d)
}

fn sonics_defaults() -> Vec<(String, String)> {
    vec![
        ("LOGLEVEL".to_string(), "NOTICE".to_string()),
        ("LOGOUTPUT".to_string(), "SYSLOG".to_string()),
    ]
}

/// Regression (issue 14 item 2): the daemon registered its *configured*
/// level, so one run with `--set log.level=debug` left DEBUG in CONFIG_DB
/// for every later start. It registers SONiC's defaults, as
/// swss-common's `linkToDbNative` does, and the run keeps its own level;
/// for every daemon.
#[test]
fn a_run_level_is_never_written_to_config_db_and_holds_for_every_run() {
    for which in Syncd::ALL {
        let name = which.name();
        let ns = Netns::new().unwrap();
        let redis = RedisServer::start().unwrap();
        let key = format!("LOGGER|{name}");
        assert!(redis.hgetall(4, &key).unwrap().is_empty());
        let debug = || {
            let mut o = which.options();
            o.sets.push("log.level=debug".into());
            o
        };
        for run in 1..=2 {
            let mut d = Daemon::start_with(&ns, &redis, debug());
            d.wait_ready();
            assert_eq!(
                redis.hgetall(4, &key).unwrap(),
                sonics_defaults(),
                "{name} run {run}"
            );
            // A link event: every read of the event socket is a DEBUG line.
            ns.add_port(&format!("Ethernet{}", 100 + run)).unwrap();
            // The second run finds the first one's NOTICE, which is no
            // choice: both run at debug.
            let log = d.wait_log(" DEBUG netlink: ");
            assert!(
                !log.contains("log level NOTICE"),
                "{name} run {run}:\n{log}"
            );
            d.stop();
        }
    }
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

// ---------------------------------------------------------------------
// Syslog on a real /dev/log
// ---------------------------------------------------------------------

/// One datagram as received: its text and the sender's pid (from the
/// socket's credentials, as journald and rsyslog learn it).
#[derive(Debug, Clone)]
struct Datagram {
    text: String,
    pid: i32,
}

impl Datagram {
    /// `<PRI>Mmm dd hh:mm:ss ident: body`, checked piece by piece:
    /// (priority, ident, body).
    fn parts(&self) -> (u8, &str, &str) {
        let t = &self.text;
        let bad = format!("not an RFC 3164 datagram as glibc writes it: {t:?}");
        let rest = t.strip_prefix('<').expect(&bad);
        let (pri, rest) = rest.split_once('>').expect(&bad);
        let pri: u8 = pri.parse().expect(&bad);
        let (stamp, rest) = (rest.get(..15).expect(&bad), &rest[15..]);
        let months = "JanFebMarAprMayJunJulAugSepOctNovDec";
        let day = stamp[4..6].trim_start();
        let ok = months.contains(&stamp[..3])
            && stamp.as_bytes()[3] == b' '
            && day.parse::<u8>().is_ok_and(|d| (1..=31).contains(&d))
            && stamp.as_bytes()[6] == b' '
            && stamp[7..]
                .split(':')
                .all(|n| n.len() == 2 && n.parse::<u8>().is_ok());
        assert!(ok, "bad timestamp {stamp:?} in {t:?}");
        let rest = rest.strip_prefix(' ').expect(&bad);
        let (ident, body) = rest.split_once(": ").expect(&bad);
        (pri, ident, body)
    }

    fn priority(&self) -> u8 {
        self.parts().0
    }

    fn body(&self) -> &str {
        self.parts().2
    }
}

/// LOG_USER: glibc's facility when `openlog` was never called, which is
/// how swss-common's daemons log.
const USER: u8 = 1;

/// A syslog socket of the test's own that the daemon sees as `/dev/log`:
/// the daemon runs in a private mount namespace (`unshare -m`) in which
/// this directory is bind-mounted over `/dev`. Nothing outside the
/// daemon's namespace changes; the mount goes with it, the directory
/// with `dir` (on drop, also after a failure).
struct DevLog {
    dir: TempDir,
    sock: Option<UnixDatagram>,
    /// Every datagram received so far.
    seen: Vec<Datagram>,
}

impl DevLog {
    /// Bound in the test's network namespace (socket limits such as
    /// `net.unix.max_dgram_qlen` are those of `netns` when given).
    fn new(netns: Option<&Netns>) -> DevLog {
        let dir = TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("dev")).unwrap();
        let mut d = DevLog {
            dir,
            sock: None,
            seen: Vec::new(),
        };
        d.bind(netns);
        d
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("dev/log")
    }

    /// Bind the socket (again), receiving the sender's credentials.
    fn bind(&mut self, netns: Option<&Netns>) {
        let path = self.path();
        let _ = std::fs::remove_file(&path);
        let sock = match netns {
            Some(ns) => in_netns(&ns.name, move || UnixDatagram::bind(&path)),
            None => UnixDatagram::bind(&path),
        }
        .unwrap();
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true).unwrap();
        self.sock = Some(sock);
    }

    /// The syslog daemon goes away: its socket closed and unlinked.
    fn close(&mut self) {
        self.sock = None;
        std::fs::remove_file(self.path()).unwrap();
    }

    /// What the daemon runs under: a private mount namespace with this
    /// directory as its `/dev`.
    fn wrap(&self) -> Vec<String> {
        let dev = self.dir.path().join("dev");
        vec![
            "unshare".into(),
            "-m".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "mount --bind '{}' /dev && exec \"$0\" \"$@\"",
                dev.display()
            ),
        ]
    }

    /// The next datagram, or `None` at `deadline`.
    fn recv(&mut self, deadline: Instant) -> Option<Datagram> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
        let sock = self.sock.as_ref().expect("bound");
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(UnixCredentials);
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return None,
            Err(e) => panic!("recvmsg on {}: {e}", self.path().display()),
        };
        let mut pid = 0;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmCredentials(cred) = c {
                pid = cred.pid();
            }
        }
        let n = msg.bytes;
        let d = Datagram {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            pid,
        };
        self.seen.push(d.clone());
        Some(d)
    }

    /// Wait (at most `WAIT`) for a datagram whose body contains `needle`.
    fn wait_for(&mut self, needle: &str) -> Datagram {
        self.wait_until(needle, Instant::now() + WAIT, || {})
            .unwrap_or_else(|| panic!("no datagram with {needle:?}; got {:#?}", self.seen))
    }

    /// Wait until `deadline` for a datagram whose body contains `needle`,
    /// calling `nudge` before each wait of at most 250 ms (to make the
    /// daemon log again).
    fn wait_until(
        &mut self,
        needle: &str,
        deadline: Instant,
        mut nudge: impl FnMut(),
    ) -> Option<Datagram> {
        if let Some(d) = self.seen.iter().find(|d| d.body().contains(needle)) {
            return Some(d.clone());
        }
        while Instant::now() < deadline {
            nudge();
            let step = (Instant::now() + Duration::from_millis(250)).min(deadline);
            while let Some(d) = self.recv(step) {
                if d.body().contains(needle) {
                    return Some(d);
                }
            }
        }
        None
    }

    /// Everything already queued, without waiting.
    fn drain(&mut self) {
        while self
            .recv(Instant::now() + Duration::from_millis(1))
            .is_some()
        {}
    }
}

/// The daemon with `sets` added, under `wrap` (then the DevLog's mount).
fn start_logging(
    which: Syncd,
    ns: &Netns,
    redis: &RedisServer,
    devlog: &DevLog,
    env_wrap: &[&str],
    sets: &[&str],
) -> Daemon {
    let mut o = which.options();
    o.sets.extend(sets.iter().map(|s| s.to_string()));
    o.wrap = env_wrap.iter().map(|s| s.to_string()).collect();
    o.wrap.extend(devlog.wrap());
    Daemon::start_with(ns, redis, o)
}

/// Issue 14 item 2: `log.output = "syslog"` sends each line as a datagram
/// to `/dev/log` the way SONiC's daemons do (glibc's `syslog(3)` without
/// `openlog`): identifier the daemon's name, no `[pid]`, facility
/// LOG_USER, the severity of each line's level; for every daemon.
#[test]
fn syslog_datagrams_carry_the_daemons_name_sonics_facility_and_each_severity() {
    for which in Syncd::ALL {
        let name = which.name();
        let key = format!("LOGGER|{name}");
        let ns = Netns::new().unwrap();
        let redis = RedisServer::start().unwrap();
        let mut devlog = DevLog::new(None);
        let mut d = start_logging(which, &ns, &redis, &devlog, &[], &["log.output=syslog"]);
        d.wait_ready();
        let start = devlog.wait_for(" starting; reactor ");
        let (pri, ident, body) = start.parts();
        assert_eq!((pri, ident), (USER * 8 + 5, name), "{start:?}");
        assert!(body.starts_with(&format!("{name} ")), "{body}");
        assert_eq!(start.pid, d.pid(), "sent by {name} itself");
        // The harness runs it at info, with metrics off.
        let info = devlog.wait_for("metrics: export disabled");
        assert_eq!(info.priority(), USER * 8 + 6, "{info:?}");
        // A warning and an error, made live through CONFIG_DB.
        redis.cmd(4, &["HSET", &key, "LOGLEVEL", "LOUD"]).unwrap();
        let warn = devlog.wait_for("LOGLEVEL \"LOUD\" is not a level");
        assert_eq!(warn.priority(), USER * 8 + 4, "{warn:?}");
        redis.cmd(4, &["HSET", &key, "LOGOUTPUT", "FILE"]).unwrap();
        let error = devlog.wait_for("LOGOUTPUT \"FILE\" is not SYSLOG, STDOUT or STDERR");
        assert_eq!(error.priority(), USER * 8 + 3, "{error:?}");
        // Nothing went to stderr.
        let log = d.stop();
        assert!(!log.contains("starting"), "{log}");
        assert!(
            devlog.seen.iter().all(|g| g.parts().1 == name),
            "{:#?}",
            devlog.seen
        );
    }
}

/// `auto`: syslog when `/dev/log` exists and systemd's journal is not
/// stderr; under the journal its stderr protocol. Under the journal means
/// `JOURNAL_STREAM` names stderr's own device and inode, as systemd.exec(5)
/// says to check: a child of a unit inherits the variable with a stderr
/// that may be another stream (regression: the variable's presence was
/// taken for the journal).
#[test]
fn auto_is_syslog_without_the_journal_and_stderr_under_it() {
    for which in Syncd::ALL {
        let name = which.name();
        let ns = Netns::new().unwrap();
        let redis = RedisServer::start().unwrap();
        let mut devlog = DevLog::new(None);
        // No JOURNAL_STREAM, then one naming some other stream: syslog.
        for env in [
            &["env", "-u", "JOURNAL_STREAM"][..],
            &["env", "JOURNAL_STREAM=8:12345"][..],
        ] {
            devlog.drain();
            devlog.seen.clear();
            let mut d = start_logging(which, &ns, &redis, &devlog, env, &["log.output=auto"]);
            d.wait_ready();
            let start = devlog.wait_for(" starting; reactor ");
            assert_eq!(start.priority(), USER * 8 + 5, "{name} {env:?}");
            let log = d.stop();
            assert!(!log.contains("starting"), "{name} {env:?}: {log}");
        }

        devlog.drain();
        let before = devlog.seen.len();
        // JOURNAL_STREAM naming the daemon's stderr (its log file here),
        // as systemd sets it: `<st_dev>:<st_ino>`, read by stat(1) on the
        // shell's own fd 2, which the daemon inherits.
        let journal = [
            "sh",
            "-c",
            r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@""#,
            "sh",
        ];
        let mut d = start_logging(which, &ns, &redis, &devlog, &journal, &["log.output=auto"]);
        d.wait_ready();
        let log = d.stop();
        // journald's priority prefix on each line.
        assert!(log.contains(&format!("<5>NOTICE: {name} ")), "{log}");
        assert!(log.contains("<6>INFO: metrics: export disabled"), "{log}");
        devlog.drain();
        assert_eq!(devlog.seen.len(), before, "{:#?}", &devlog.seen[before..]);
    }
}

/// CONFIG_DB `LOGOUTPUT` is followed live, as swss-common's logger
/// thread follows it: STDERR, back to SYSLOG; each switch said on both;
/// for every daemon.
#[test]
fn logoutput_in_config_db_switches_the_output_live() {
    for which in Syncd::ALL {
        let key = format!("LOGGER|{}", which.name());
        let ns = Netns::new().unwrap();
        let redis = RedisServer::start().unwrap();
        let mut devlog = DevLog::new(None);
        let mut d = start_logging(which, &ns, &redis, &devlog, &[], &["log.output=syslog"]);
        d.wait_ready();
        devlog.wait_for(" starting; reactor ");
        let hset = |field: &str, value: &str| {
            redis.cmd(4, &["HSET", &key, field, value]).unwrap();
        };
        hset("LOGOUTPUT", "STDERR");
        let switch = format!("log output stderr (CONFIG_DB {key}; was syslog)");
        d.wait_log(&switch);
        assert_eq!(devlog.wait_for(&switch).priority(), USER * 8 + 5);
        hset("LOGLEVEL", "DEBUG");
        d.wait_log(&format!("NOTICE log level DEBUG (CONFIG_DB {key})"));
        hset("LOGOUTPUT", "SYSLOG");
        let back = format!("log output syslog (CONFIG_DB {key}; was stderr)");
        d.wait_log(&back);
        devlog.wait_for(&back);
        hset("LOGLEVEL", "INFO");
        devlog.wait_for(&format!("log level INFO (CONFIG_DB {key})"));
        let log = d.stop();
        // Each line went one way only.
        assert!(!log.contains("log level INFO"), "{log}");
        assert!(!log.contains(" starting; reactor "), "{log}");
        assert!(
            !devlog
                .seen
                .iter()
                .any(|g| g.body().contains("log level DEBUG")),
            "{:#?}",
            devlog.seen
        );
    }
}

/// The syslog daemon restarts: meanwhile the lines go to stderr (the
/// first one saying why), the socket is found again once it is back, and
/// the first line through says how many went to stderr; all counted.
#[test]
fn syslog_going_away_sends_lines_to_stderr_until_it_is_back() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    let mut devlog = DevLog::new(None);
    let listen = "127.0.0.1:29101";
    let mut d = start_logging(
        Syncd::Portsyncd,
        &ns,
        &redis,
        &devlog,
        &[],
        &["log.output=syslog", &format!("metrics.listen={listen}")],
    );
    d.wait_ready();
    devlog.wait_for(" starting; reactor ");
    let level = std::cell::Cell::new(false);
    let toggle = || {
        level.set(!level.get());
        let to = if level.get() { "DEBUG" } else { "INFO" };
        redis
            .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", to])
            .unwrap();
    };
    devlog.close();
    toggle();
    let log = d.wait_log("log lines go to stderr until it answers");
    assert!(log.contains("WARN syslog /dev/log: "), "{log}");
    d.wait_log("log level DEBUG (CONFIG_DB LOGGER|portsyncd)");
    devlog.bind(None);
    // Tried again at most once a second: nudge until a line gets through.
    let note = devlog
        .wait_until(
            "log lines went to stderr meanwhile",
            Instant::now() + WAIT,
            toggle,
        )
        .unwrap_or_else(|| panic!("no reconnect; log:\n{}", d.log()));
    assert!(
        note.body().starts_with("/dev/log answers again; "),
        "{note:?}"
    );
    assert_eq!(note.priority(), USER * 8 + 5);
    let m = scrape(&ns, listen.parse().unwrap());
    assert_eq!(m.int("portsyncd_log_syslog_reconnects_total"), 1);
    assert!(m.int("portsyncd_log_lines_to_stderr_total") >= 1);
    assert_eq!(m.int("portsyncd_log_lines_dropped_total"), 0);
    d.stop();
}

/// glibc's `syslog(3)` blocks while the syslog daemon's queue is full, and
/// with it the caller. Here the queue holds three datagrams and nobody
/// reads: start-up still completes, the rest is dropped and counted, and
/// once lines get through one says how many were dropped.
#[test]
fn a_full_syslog_queue_never_blocks_the_daemon() {
    let ns = Netns::new().unwrap();
    // The receiver is made in the test's namespace, where its queue
    // length is this namespace's (and nobody else's) sysctl.
    testbed::run(
        ns.command("sysctl")
            .args(["-qw", "net.unix.max_dgram_qlen=2"]),
    )
    .unwrap();
    let redis = RedisServer::start().unwrap();
    let mut devlog = DevLog::new(Some(&ns));
    let listen = "127.0.0.1:29101";
    let mut d = start_logging(
        Syncd::Portsyncd,
        &ns,
        &redis,
        &devlog,
        &[],
        &["log.output=syslog", &format!("metrics.listen={listen}")],
    );
    d.wait_ready();
    let m = scrape(&ns, listen.parse().unwrap());
    let dropped = m.int("portsyncd_log_lines_dropped_total");
    assert!(dropped > 0, "nothing dropped");
    let level = std::cell::Cell::new(false);
    let toggle = || {
        level.set(!level.get());
        let to = if level.get() { "WARN" } else { "INFO" };
        redis
            .cmd(4, &["HSET", "LOGGER|portsyncd", "LOGLEVEL", to])
            .unwrap();
    };
    let note = devlog
        .wait_until(
            "log lines dropped: /dev/log was full",
            Instant::now() + WAIT,
            toggle,
        )
        .unwrap_or_else(|| panic!("no drop note; got {:#?}", devlog.seen));
    assert_eq!(note.priority(), USER * 8 + 4, "{note:?}");
    let said: u64 = note.body().split(' ').next().unwrap().parse().unwrap();
    assert!(
        said >= 1 && said <= dropped + 10,
        "{note:?}, counted {dropped}"
    );
    d.stop();
}
