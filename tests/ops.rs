//! Operations, with real parts: the systemd unit (systemd-analyze, and the
//! unit's identity and placement applied to the real binary), sd_notify on
//! a real datagram socket, the command line's exit statuses with real
//! files, the sysctl profile and `sysctl-check` against the live /proc/sys,
//! and `make install` into a staging directory.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use util::{Daemon, DaemonOptions, Netns, RedisOptions, RedisServer, Syncd, TempDir, WAIT};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// stdout and stderr of a finished command, for asserts and messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The real binary with `args`, outside any namespace, and without any
/// `PORTSYNCD_*` or notify variable the test runner may carry.
fn portsyncd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(Daemon::binary());
    c.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PORTSYNCD_") || k == "NOTIFY_SOCKET" || k.starts_with("WATCHDOG_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().unwrap()
}

/// A tool the test needs, or a failure saying how to get it.
fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(found, "{name} not found: apt-get install {package}");
    Command::new(name)
}

// ---------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------

/// `systemd/<daemon>.service`: every daemon we ship has one, and every
/// test of the unit runs for each.
fn unit_text(d: Syncd) -> String {
    read(repo().join(format!("systemd/{}.service", d.name())))
}

/// Every `Key=value` of a unit file, in order (comments and sections out).
fn directives(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The values of `key`, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    directives(unit)
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key`.
fn value(unit: &str, key: &str) -> String {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{key}= must be set once in the unit: {v:?}");
    v[0].clone()
}

fn words(v: &str) -> BTreeSet<String> {
    v.split_whitespace().map(str::to_string).collect()
}

/// `systemd-analyze verify` on `unit`: (success, everything it printed).
fn verify(unit: &Path) -> (bool, String) {
    let out = tool("systemd-analyze", "systemd")
        .arg("verify")
        .arg(unit)
        .current_dir(unit.parent().unwrap())
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn the_unit_passes_systemd_analyze_verify_without_a_warning() {
    for d in Syncd::ALL {
        let name = d.name();
        let unit = unit_text(d);
        let exec = value(&unit, "ExecStart");
        assert_eq!(exec, format!("/usr/local/bin/{name}"));
        // verify insists that ExecStart= names an executable: the built one.
        let dir = TempDir::new().unwrap();
        let path = dir.path().join(format!("{name}.service"));
        let copy = unit.replace(
            &format!("ExecStart=/usr/local/bin/{name}\n"),
            &format!("ExecStart={}\n", d.binary()),
        );
        assert_ne!(copy, unit);
        std::fs::write(&path, &copy).unwrap();
        let (ok, out) = verify(&path);
        assert!(ok, "systemd-analyze verify {name}.service failed:\n{out}");
        let about_us: Vec<&str> = out.lines().filter(|l| l.contains(name)).collect();
        assert!(about_us.is_empty(), "verify warns:\n{out}");

        // The check above would see a warning: a bad value is reported.
        std::fs::write(
            &path,
            copy.replace("CPUSchedulingPolicy=fifo", "CPUSchedulingPolicy=fifoo"),
        )
        .unwrap();
        let (_, out) = verify(&path);
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("{name}.service")) && l.contains("fifoo")),
            "verify did not report a bad value in {name}.service:\n{out}"
        );
    }
}

#[test]
fn the_unit_declares_what_the_daemon_needs() {
    for d in Syncd::ALL {
        let name = d.name();
        let unit = unit_text(d);
        assert!(value(&unit, "Description").contains(name), "{name}");
        assert_eq!(value(&unit, "Type"), "notify", "{name}");
        assert!(!value(&unit, "WatchdogSec").is_empty(), "{name}");
        assert_eq!(value(&unit, "Restart"), "on-failure", "{name}");
        // A bad configuration (exit 2) does not heal by restarting.
        assert_eq!(value(&unit, "RestartPreventExitStatus"), "2", "{name}");
        assert!(words(&value(&unit, "After")).contains("database.service"));
        assert!(words(&value(&unit, "Wants")).contains("database.service"));

        assert!(!value(&unit, "CPUAffinity").is_empty());
        assert_eq!(value(&unit, "CPUSchedulingPolicy"), "fifo");
        let prio: u8 = value(&unit, "CPUSchedulingPriority").parse().unwrap();
        assert!((1..=99).contains(&prio));
        // [runtime] sched unset keeps the unit's policy: the unit must not
        // override it through the environment.
        assert!(
            !values(&unit, "Environment")
                .iter()
                .any(|e| e.starts_with(&format!("{}RUNTIME_SCHED", d.config().env_prefix))),
            "{name}: the unit should leave runtime.sched unset"
        );
        assert_eq!(value(&unit, "LimitMEMLOCK"), "infinity");

        let caps = words("CAP_NET_ADMIN CAP_IPC_LOCK CAP_SYS_NICE");
        assert_eq!(words(&value(&unit, "AmbientCapabilities")), caps, "{name}");
        assert_eq!(
            words(&value(&unit, "CapabilityBoundingSet")),
            caps,
            "{name}"
        );
        let user = value(&unit, "User");
        assert!(user != "root" && user != "0", "{name}: User={user}");
        assert_eq!(value(&unit, "NoNewPrivileges"), "yes");
        assert_eq!(value(&unit, "ProtectSystem"), "strict");
        assert_eq!(
            words(&value(&unit, "RestrictAddressFamilies")),
            words("AF_UNIX AF_INET AF_INET6 AF_NETLINK")
        );
        // These would break it: real-time is the point, the host's links too.
        for (key, breaks) in [("RestrictRealtime", "yes"), ("PrivateNetwork", "yes")] {
            assert!(
                !values(&unit, key).iter().any(|v| v == breaks),
                "{name}: {key}={breaks}"
            );
        }
    }
}

/// `/proc/<pid>/task/<tid>/stat`: (policy, rt_priority).
fn sched_of(pid: i32, tid: i32) -> (u32, u32) {
    let stat = read(format!("/proc/{pid}/task/{tid}/stat"));
    // Fields after the command name, which is in parentheses: the state is
    // field 3 of proc(5), rt_priority 40, policy 41.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (rest[41 - 3].parse().unwrap(), rest[40 - 3].parse().unwrap())
}

/// A `Name:\tvalue` line of a `/proc/.../status` file.
fn status_field(path: &str, field: &str) -> String {
    read(path)
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{field} not in {path}"))
}

fn cap_mask(caps: &BTreeSet<String>) -> u64 {
    caps.iter()
        .map(|c| match c.as_str() {
            // linux/capability.h
            "CAP_NET_ADMIN" => 1u64 << 12,
            "CAP_IPC_LOCK" => 1 << 14,
            "CAP_SYS_NICE" => 1 << 23,
            other => panic!("add {other} to cap_mask"),
        })
        .fold(0, |a, b| a | b)
}

/// What systemd does for the unit before it execs ExecStart=, done with
/// util-linux: CPUAffinity= (taskset), CPUSchedulingPolicy=/Priority=/
/// ResetOnFork= (chrt), User= and the capabilities (setpriv; nobody stands
/// for the dynamic user), NoNewPrivileges=; plus a notify socket any user
/// may write to, as systemd's is. Environment= goes in `env`.
/// LimitMEMLOCK= is left out: raising a hard limit needs CAP_SYS_RESOURCE,
/// which this test's root lacks; CAP_IPC_LOCK must do without it.
fn as_the_unit_runs_it(unit: &str) -> (Vec<String>, Vec<(String, String)>) {
    let caps = words(&value(unit, "AmbientCapabilities"));
    let list = |sign: &str| {
        caps.iter()
            .map(|c| format!("{sign}{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut wrap: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        r#"chmod 0666 "$NOTIFY_SOCKET" && exec "$@""#.into(),
        "sh".into(),
        "taskset".into(),
        "-c".into(),
        value(unit, "CPUAffinity"),
        "chrt".into(),
    ];
    if value(unit, "CPUSchedulingResetOnFork") == "yes" {
        wrap.push("--reset-on-fork".into());
    }
    assert_eq!(value(unit, "CPUSchedulingPolicy"), "fifo");
    wrap.extend([
        "--fifo".into(),
        value(unit, "CPUSchedulingPriority"),
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{}", list("+")),
        format!("--ambient-caps={}", list("+")),
        format!("--bounding-set=-all,{}", list("+")),
    ]);
    if value(unit, "NoNewPrivileges") == "yes" {
        wrap.push("--no-new-privs".into());
    }
    let env = values(unit, "Environment")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (wrap, env)
}

#[test]
fn as_its_unit_runs_it_portsyncd_works_unprivileged_and_only_the_loop_is_real_time() {
    run_as_the_unit_runs_it(Syncd::Portsyncd);
}

#[test]
fn as_its_unit_runs_it_neighsyncd_works_unprivileged_and_only_the_loop_is_real_time() {
    run_as_the_unit_runs_it(Syncd::Neighsyncd);
}

/// The daemon under its unit's identity and placement
/// ([`as_the_unit_runs_it`]): every placement granted, the capabilities
/// and nothing else, only the loop thread real-time, and it does its job.
fn run_as_the_unit_runs_it(which: Syncd) {
    let name = which.name();
    let unit = unit_text(which);
    let cpu: usize = value(&unit, "CPUAffinity").parse().unwrap();
    if cpu >= syncd::engine::runtime::config::available_cpus() {
        eprintln!("skipped: {name}'s CPUAffinity={cpu} is not online here");
        return;
    }
    let prio: u32 = value(&unit, "CPUSchedulingPriority").parse().unwrap();
    let (wrap, env) = as_the_unit_runs_it(&unit);

    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    which.prepare(&ns, &redis);
    if which == Syncd::Portsyncd {
        // An Ethernet netdev that predates the daemon: an old interface,
        // which a cold start sets admin-down through netlink (CAP_NET_ADMIN).
        ns.add_port("Ethernet96").unwrap();
        ns.set_up("Ethernet96").unwrap();
    }
    let opts = DaemonOptions {
        sets: vec![
            "metrics.listen=".into(),
            // Refused placement is fatal: every request must be granted.
            "runtime.strict=true".into(),
            "runtime.mlock_all=true".into(),
        ],
        env,
        wrap,
        ..which.options()
    };
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    let pid = d.pid();

    let status = format!("/proc/{pid}/status");
    assert_eq!(status_field(&status, "Uid"), "65534\t65534\t65534\t65534");
    let caps = cap_mask(&words(&value(&unit, "AmbientCapabilities")));
    for set in ["CapEff", "CapBnd", "CapAmb"] {
        let got = u64::from_str_radix(&status_field(&status, set), 16).unwrap();
        assert_eq!(got, caps, "{name} {set}");
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_ne!(status_field(&status, "VmLck"), "0 kB");

    let mut saw_metrics = false;
    // `<daemon>-metrics`, of which the kernel keeps 15 characters.
    let metrics_thread = format!("{name}-metr");
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let comm = read(format!("/proc/{pid}/task/{tid}/comm"));
        let allowed = status_field(
            &format!("/proc/{pid}/task/{tid}/status"),
            "Cpus_allowed_list",
        );
        assert_eq!(allowed, cpu.to_string(), "{comm}");
        if tid == pid {
            assert_eq!(
                sched_of(pid, tid),
                (libc::SCHED_FIFO as u32, prio),
                "{name} loop thread"
            );
        } else if comm.starts_with(&metrics_thread) {
            saw_metrics = true;
            assert_eq!(sched_of(pid, tid).0, libc::SCHED_OTHER as u32, "{comm}");
        }
    }
    assert!(saw_metrics, "no {metrics_thread} thread found");
    let log = d.log();
    // Nothing refused: SO_RCVBUFFORCE (CAP_NET_ADMIN) included.
    assert!(!log.contains("refused"), "{log}");
    if which == Syncd::Portsyncd {
        // SO_RCVBUFFORCE of 16 MiB reads back doubled.
        assert!(
            log.contains("netlink receive buffer: 33554432 bytes"),
            "{log}"
        );
        assert_eq!(ns.link_state("Ethernet96").map(|s| s.0), Some(false));
    }

    // And it does its job.
    which.exercise(&ns, &redis);

    d.signal(libc::SIGTERM);
    d.wait_notify("STOPPING=1");
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

/// The system calls in a group of `systemd-analyze syscall-filter`,
/// nested groups expanded.
fn syscall_group(group: &str, seen: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if let Some(s) = seen.get(group) {
        return s.clone();
    }
    let out = tool("systemd-analyze", "systemd")
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut set = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            set.extend(syscall_group(line, seen));
        } else {
            set.insert(line.to_string());
        }
    }
    assert!(!set.is_empty(), "{group} is empty");
    seen.insert(group.to_string(), set.clone());
    set
}

/// The syscall names of `strace -c` output.
fn strace_summary(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let first = f.first()?.parse::<f64>().ok();
            let name = *f.last()?;
            (first.is_some() && name != "total").then(|| name.to_string())
        })
        .collect()
}

/// GET /metrics from inside `ns` (a thread that joins it).
fn http_get_in(ns: &Netns, port: u16) -> String {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: `f` is an open netns file; setns moves only this fresh
        // thread, which ends right after.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    })
    .join()
    .unwrap()
}

/// A process this test started but is not the parent of (a daemon under
/// strace), held by a pidfd so a signal never reaches a recycled pid.
/// Killed on drop if still running.
struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    fn open(pid: i32) -> Pidfd {
        // SAFETY: pidfd_open takes a pid and flags; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        assert!(
            fd >= 0,
            "pidfd_open {pid}: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh fd owned by no one else.
        Pidfd(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo (null).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Drop for Pidfd {
    fn drop(&mut self) {
        let _ = self.signal(libc::SIGKILL);
    }
}

#[test]
fn every_system_call_of_a_real_portsyncd_run_passes_the_units_filter() {
    run_under_strace_against_the_units_filter(Syncd::Portsyncd);
}

#[test]
fn every_system_call_of_a_real_neighsyncd_run_passes_the_units_filter() {
    run_under_strace_against_the_units_filter(Syncd::Neighsyncd);
}

/// Every system call a real run of the daemon makes (under `strace -f
/// -c`: start-up, a real change synced, a scrape, SIGTERM) is one its
/// unit's `SystemCallFilter=` lets through.
fn run_under_strace_against_the_units_filter(which: Syncd) {
    let name = which.name();
    let unit = unit_text(which);
    let mut groups = BTreeMap::new();
    let mut allowed = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for v in values(&unit, "SystemCallFilter") {
        let (deny, list) = match v.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, v.as_str()),
        };
        for item in list.split_whitespace() {
            let calls = if item.starts_with('@') {
                syscall_group(item, &mut groups)
            } else {
                BTreeSet::from([item.to_string()])
            };
            if deny { &mut denied } else { &mut allowed }.extend(calls);
        }
    }
    assert!(
        !allowed.is_empty(),
        "{name}.service has no SystemCallFilter= allow list"
    );

    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    which.prepare(&ns, &redis);
    if which == Syncd::Portsyncd {
        // An old netdev: the cold start's admin-down path.
        ns.add_port("Ethernet96").unwrap();
    }
    let trace = TempDir::new().unwrap();
    let summary = trace.path().join("strace.txt");
    let cpu = (syncd::engine::runtime::config::available_cpus() - 1).to_string();
    let port = which.config().metrics_port;
    let opts = DaemonOptions {
        // Every path the unit's daemon takes: real-time, pinned, locked,
        // metrics served over HTTP.
        sets: vec![
            format!("metrics.listen=127.0.0.1:{port}"),
            "runtime.sched=fifo:10".into(),
            format!("runtime.cpu={cpu}"),
            "runtime.mlock_all=true".into(),
            "runtime.strict=true".into(),
        ],
        wrap: vec![
            "strace".into(),
            "-f".into(),
            "-qq".into(),
            "-c".into(),
            "-o".into(),
            summary.display().to_string(),
        ],
        ..which.options()
    };
    let _ = tool("strace", "strace");
    let mut d = Daemon::start_with(&ns, &redis, opts);
    d.wait_ready();
    let strace_pid = d.pid();
    let children = read(format!("/proc/{strace_pid}/task/{strace_pid}/children"));
    let daemon: i32 = children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("strace has no child"))
        .parse()
        .unwrap();
    let daemon = Pidfd::open(daemon);
    which.exercise(&ns, &redis);
    let page = http_get_in(&ns, port);
    assert!(page.starts_with("HTTP/1."), "{page}");
    daemon.signal(libc::SIGTERM).unwrap();
    d.wait_notify("STOPPING=1");
    // strace exits with its tracee's status.
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());

    let used = strace_summary(&read(&summary));
    assert!(
        used.contains("epoll_wait") && used.contains("sched_setscheduler"),
        "{name}: {used:?}"
    );
    let outside: Vec<&String> = used
        .iter()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        outside.is_empty(),
        "system calls {name}.service's SystemCallFilter= refuses: {outside:?}"
    );
}

// ---------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------

fn lines_with<'a>(msgs: &'a [String], prefix: &str) -> Vec<&'a str> {
    msgs.iter()
        .flat_map(|m| m.lines())
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[test]
fn ready_comes_once_start_up_is_done_after_status_lines() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    redis.configure_ports(&["Ethernet0", "Ethernet4"]).unwrap();
    let d = Daemon::start(&ns, &redis);
    let msgs = d.notify_messages(Some("READY=1"), Instant::now() + WAIT);
    let ready = msgs.last().unwrap();
    assert!(ready.lines().any(|l| l == "READY=1"), "{msgs:?}");
    // Progress while starting, then what it runs with.
    assert!(
        !lines_with(&msgs[..msgs.len() - 1], "STATUS=starting").is_empty(),
        "{msgs:?}"
    );
    let status = lines_with(std::slice::from_ref(ready), "STATUS=");
    assert!(
        status.len() == 1 && status[0].contains("running"),
        "{ready:?}"
    );
    // READY means the config push is in Redis for orchagent.
    let mut popped = redis.orchagent_pop().unwrap();
    popped.sort();
    assert_eq!(popped, ["Ethernet0", "Ethernet4", "PortConfigDone"]);
}

/// WATCHDOG=1 pings and when they came, from now until `n` have come or
/// the deadline passed, and every message seen.
fn watchdog_pings(d: &Daemon, n: usize, deadline: Instant) -> (Vec<Instant>, Vec<String>) {
    let mut pings = Vec::new();
    let mut all = Vec::new();
    while pings.len() < n {
        let msgs = d.notify_messages(Some("WATCHDOG=1"), deadline);
        if msgs.is_empty() {
            break;
        }
        if msgs
            .last()
            .is_some_and(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        {
            pings.push(Instant::now());
        }
        let done = Instant::now() >= deadline;
        all.extend(msgs);
        if done {
            break;
        }
    }
    (pings, all)
}

#[test]
fn watchdog_pings_at_half_the_timeout_and_not_for_another_pid() {
    let ns = Netns::new().unwrap();
    let redis = RedisServer::start().unwrap();
    // WATCHDOG_PID names another process: this daemon must not ping.
    let other = Daemon::start_with(
        &ns,
        &redis,
        DaemonOptions {
            env: vec![
                ("WATCHDOG_USEC".into(), "200000".into()),
                ("WATCHDOG_PID".into(), "1".into()),
            ],
            ..Default::default()
        },
    );
    let mut other_msgs = other.notify_messages(Some("READY=1"), Instant::now() + WAIT);
    // WATCHDOG_PID is the daemon's own pid: the shell's, which it execs.
    let mut d = Daemon::start_with(
        &ns,
        &redis,
        DaemonOptions {
            env: vec![("WATCHDOG_USEC".into(), "200000".into())],
            wrap: vec![
                "sh".into(),
                "-c".into(),
                r#"WATCHDOG_PID=$$ exec "$@""#.into(),
                "sh".into(),
            ],
            ..Default::default()
        },
    );
    d.wait_ready();
    // Every 100 ms: at least 3 within a bound far above 300 ms.
    let (pings, _) = watchdog_pings(&d, 5, Instant::now() + WAIT);
    assert!(pings.len() >= 3, "{} pings; log:\n{}", pings.len(), d.log());
    let mut gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(50) && median < Duration::from_millis(200),
        "median gap {median:?} (want ~100 ms); gaps {gaps:?}"
    );

    // The other daemon ran throughout those pings; what it sent meanwhile
    // waits in its socket, read now up to its STOPPING=1.
    let mut other = other;
    other.signal(libc::SIGTERM);
    other_msgs.extend(other.notify_messages(Some("STOPPING=1"), Instant::now() + WAIT));
    assert!(
        lines_with(&other_msgs, "WATCHDOG=1").is_empty(),
        "pinged with WATCHDOG_PID=1: {other_msgs:?}"
    );
    assert!(
        lines_with(&other_msgs, "STOPPING=1").len() == 1,
        "{other_msgs:?}"
    );
    assert_eq!(other.wait_exit().code(), Some(0));

    d.signal(libc::SIGTERM);
    d.wait_notify("STOPPING=1");
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

#[test]
fn unreachable_redis_at_start_shows_in_status_and_sigterm_still_exits_0() {
    let ns = Netns::new().unwrap();
    let mut redis = RedisServer::start_with(RedisOptions::default()).unwrap();
    // No unix socket file and nothing on the TCP port.
    redis.stop();
    let mut d = Daemon::start_with(
        &ns,
        &redis,
        DaemonOptions {
            sets: vec!["metrics.listen=".into(), "redis.retry_max_ms=100".into()],
            ..Default::default()
        },
    );
    // Two attempts, both reported: it retries rather than exits.
    let first = d.wait_notify("STATUS=waiting for Redis");
    let second = d.wait_notify("STATUS=waiting for Redis");
    assert!(first.contains(&redis.port.to_string()), "{first}");
    assert!(second.contains("Redis"), "{second}");
    assert!(d.alive(), "{}", d.log());
    d.signal(libc::SIGTERM);
    let msgs = d.notify_messages(Some("STOPPING=1"), Instant::now() + WAIT);
    assert!(lines_with(&msgs, "READY=1").is_empty(), "{msgs:?}");
    assert!(!lines_with(&msgs, "STOPPING=1").is_empty(), "{msgs:?}");
    assert_eq!(d.wait_exit().code(), Some(0), "{}", d.log());
}

// ---------------------------------------------------------------------
// The command line and the configuration
// ---------------------------------------------------------------------

/// Every key of the configuration as `(section, key)`, optional ones too.
fn config_keys() -> BTreeSet<(String, String)> {
    let mut c = syncd::engine::runtime::config::Config::default();
    // Unset options do not render; give them a value to list them.
    c.runtime.cpu = Some(0);
    c.metrics.cpu = Some(0);
    let table: toml::Table = c.to_toml().parse().unwrap();
    let mut keys = BTreeSet::new();
    for (section, v) in table {
        for key in v.as_table().unwrap().keys() {
            keys.insert((section.clone(), key.clone()));
        }
    }
    keys
}

#[test]
fn help_exits_0_and_names_every_section_and_key() {
    let out = portsyncd(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for (section, key) in config_keys() {
        assert!(help.contains(&format!("[{section}]")), "[{section}]");
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(key.as_str())),
            "--help does not describe {section}.{key}"
        );
    }
    assert!(help.contains("sysctl-check"));
}

#[test]
fn version_exits_0_with_the_crate_version() {
    let out = portsyncd(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("portsyncd {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key_and_value() {
    let dir = TempDir::new().unwrap();
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    // (config file, environment, what the message must name)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            file("unknown.toml", "[redis]\nbogus_key = 1\n"),
            vec![],
            vec!["unknown.toml", "bogus_key"],
        ),
        (
            file("type.toml", "[netlink]\nrcvbuf_bytes = \"big\"\n"),
            vec![],
            vec!["type.toml", "rcvbuf_bytes", "\"big\""],
        ),
        (
            file("range.toml", "[netlink]\nrcvbuf_bytes = 1\n"),
            vec![],
            vec!["netlink.rcvbuf_bytes = 1", "out of range"],
        ),
        (
            file("sched.toml", "[runtime]\nsched = \"fifo:100\"\n"),
            vec![],
            vec!["sched.toml", "sched", "fifo:100"],
        ),
        (
            file("syntax.toml", "[redis\n"),
            vec![],
            vec!["syntax.toml", "line 1"],
        ),
        (
            file("section.toml", "[bogus_section]\nx = 1\n"),
            vec![],
            vec!["section.toml", "bogus_section"],
        ),
        (
            file("empty.toml", ""),
            vec![("PORTSYNCD_RUNTIME_REACTOR", "kqueue")],
            vec!["PORTSYNCD_RUNTIME_REACTOR", "kqueue"],
        ),
        (
            dir.path().join("absent.toml").display().to_string(),
            vec![],
            vec!["absent.toml"],
        ),
    ];
    for (config, env, names) in cases {
        let out = portsyncd(&["--config", &config, "--print-config"], &env);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(2), "{config} {env:?}: {msg}");
        assert!(out.stdout.is_empty(), "{config}: printed a config");
        for n in names {
            assert!(msg.contains(n), "{config} {env:?}: {n:?} not in {msg}");
        }
    }
    // A flag, too.
    let out = portsyncd(
        &[
            "--config",
            "/dev/null",
            "--set",
            "metrics.log_interval_s=-5",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("metrics.log_interval_s"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("-5"), "{}", text(&out));
}

#[test]
fn a_missing_database_config_exits_2_naming_the_file() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("no-such-database_config.json");
    let out = portsyncd(
        &[
            "--config",
            "/dev/null",
            "--set",
            &format!("redis.database_config={}", db.display()),
            "--set",
            "metrics.listen=",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&db.display().to_string()),
        "{}",
        text(&out)
    );
}

/// The example config with every `#key = value` line uncommented.
fn example_uncommented() -> String {
    uncommented("config/portsyncd.conf.example")
}

/// The file at `path` (in the repository) with every `#key = value` line
/// uncommented.
fn uncommented(path: &str) -> String {
    read(repo().join(path))
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_shows_every_key_with_its_default() {
    let uncommented = example_uncommented();
    let cfg = syncd::engine::runtime::config::Config::from_parts(None, &uncommented, &[]).unwrap();
    assert_eq!(cfg, syncd::engine::runtime::config::Config::default());
    // Every key is there, the unset ones as an example in prose.
    let example = read(repo().join("config/portsyncd.conf.example"));
    let mut section = String::new();
    let mut seen = BTreeSet::new();
    for line in example.lines() {
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_string();
        }
        let body = line.trim_start_matches(['#', ' ']);
        if let Some((key, _)) = body.split_once(" = ") {
            seen.insert((section.clone(), key.to_string()));
        }
    }
    let missing: Vec<_> = config_keys().difference(&seen).cloned().collect();
    assert!(missing.is_empty(), "not in the example: {missing:?}");
    // And the real binary reads it so.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("portsyncd.conf");
    std::fs::write(&path, &uncommented).unwrap();
    let from_example = portsyncd(&["--config", path.to_str().unwrap(), "--print-config"], &[]);
    let defaults = portsyncd(&["--config", "/dev/null", "--print-config"], &[]);
    assert_eq!(
        from_example.status.code(),
        Some(0),
        "{}",
        text(&from_example)
    );
    assert_eq!(from_example.stdout, defaults.stdout);
}

// ---------------------------------------------------------------------
// sysctl profile and sysctl-check, against the live kernel
// ---------------------------------------------------------------------

fn live(key: &str) -> String {
    read(Path::new("/proc/sys").join(key.replace('.', "/")))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn sysctl_check(file: &Path) -> (Option<i32>, String, String) {
    sysctl_check_by(Syncd::Portsyncd, file)
}

/// `<daemon> sysctl-check FILE`: exit status, stdout, stderr.
fn sysctl_check_by(which: Syncd, file: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(which.binary())
        .args(["sysctl-check", file.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report line of `key`, split in fields.
fn report_line(out: &str, key: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.get(1).map(String::as_str) == Some(key))
        .unwrap_or_else(|| panic!("{key} not in the report:\n{out}"))
}

#[test]
fn sysctl_check_passes_on_the_live_values_and_names_a_drifted_key() {
    let dir = TempDir::new().unwrap();
    let keys = [
        "net.core.rmem_max",
        "net.core.somaxconn",
        "kernel.sched_rt_runtime_us",
        // Three fields, tab-separated in /proc.
        "net.ipv4.tcp_rmem",
    ];
    let mut profile = String::from("# the live values, read just now\n\n");
    for k in keys {
        profile.push_str(&format!("{k} = {}\n", live(k)));
    }
    profile.push_str("; a key this kernel lacks, marked optional\n");
    profile.push_str("-net.core.portsyncd_no_such_key = 1\n");
    let ok = dir.path().join("live.conf");
    std::fs::write(&ok, &profile).unwrap();
    let (code, out, err) = sysctl_check(&ok);
    assert_eq!(code, Some(0), "{out}{err}");
    for k in keys {
        let f = report_line(&out, k);
        assert_eq!(f[0], "OK", "{out}");
    }
    assert_eq!(
        report_line(&out, "net.core.portsyncd_no_such_key")[0],
        "SKIPPED"
    );

    // One value off by one: exit 1, the key with expected and actual.
    let actual: u64 = live("net.core.somaxconn").parse().unwrap();
    let wrong = actual + 1;
    let drift = dir.path().join("drift.conf");
    std::fs::write(
        &drift,
        profile.replace(
            &format!("net.core.somaxconn = {actual}\n"),
            &format!("net.core.somaxconn = {wrong}\n"),
        ),
    )
    .unwrap();
    let (code, out, err) = sysctl_check(&drift);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        report_line(&out, "net.core.somaxconn"),
        [
            "DRIFT",
            "net.core.somaxconn",
            &wrong.to_string(),
            &actual.to_string()
        ]
    );
    assert_eq!(report_line(&out, "net.core.rmem_max")[0], "OK");
    // neighsyncd's sysctl-check is the same command.
    assert_eq!(sysctl_check_by(Syncd::Neighsyncd, &drift), (code, out, err));

    // rmem_max is a ceiling: asking for less than the live value is met
    // (exit 0), and the report says the profile's line would lower it.
    let rmem: u64 = live("net.core.rmem_max").parse().unwrap();
    let lower = dir.path().join("lower.conf");
    std::fs::write(
        &lower,
        profile.replace(
            &format!("net.core.rmem_max = {rmem}\n"),
            &format!("net.core.rmem_max = {}\n", rmem - 1),
        ),
    )
    .unwrap();
    let (code, out, err) = sysctl_check(&lower);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        report_line(&out, "net.core.rmem_max"),
        [
            "ABOVE",
            "net.core.rmem_max",
            &format!(">={}", rmem - 1),
            &rmem.to_string()
        ]
    );
    assert!(out.contains("would lower it"), "{out}");

    // A key the kernel lacks, not optional: exit 1.
    let missing = dir.path().join("missing.conf");
    std::fs::write(&missing, "net.core.portsyncd_no_such_key = 1\n").unwrap();
    let (code, out, _) = sysctl_check(&missing);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        report_line(&out, "net.core.portsyncd_no_such_key")[0],
        "MISSING"
    );
}

#[test]
fn sysctl_check_exits_2_on_a_profile_it_cannot_use() {
    let dir = TempDir::new().unwrap();
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "# fine\nnet.core.rmem_max = 1\nnet.core.rmem_default\n",
    )
    .unwrap();
    let absent = dir.path().join("absent.conf");
    for which in Syncd::ALL {
        let (code, out, err) = sysctl_check_by(which, &bad);
        assert_eq!(code, Some(2), "{out}{err}");
        // Under the name of the daemon that was run.
        let said = format!("{}: sysctl-check: {}:3:", which.name(), bad.display());
        assert!(err.starts_with(&said), "{err}");
        assert!(out.is_empty(), "{out}");
        let (code, _, err) = sysctl_check_by(which, &absent);
        assert_eq!(code, Some(2));
        assert!(err.contains(&absent.display().to_string()), "{err}");
    }
}

/// Both daemons check the shipped profile, alike: every key is there to
/// compare, whatever this machine is tuned to.
#[test]
fn the_shipped_sysctl_profile_names_only_keys_this_kernel_has() {
    let profile = repo().join("sysctl/99-portsyncd.conf");
    let settings = syncd::engine::runtime::sysctl_check::load(&profile).unwrap();
    let mut reports = Vec::new();
    for which in Syncd::ALL {
        let (code, out, err) = sysctl_check_by(which, &profile);
        assert!(matches!(code, Some(0 | 1)), "{}: {out}{err}", which.name());
        for s in &settings {
            assert!(!s.optional, "{}: the shipped profile needs it", s.key);
            let f = report_line(&out, &s.key);
            assert!(["OK", "ABOVE", "DRIFT"].contains(&f[0].as_str()), "{out}");
        }
        reports.push((code, out));
    }
    assert_eq!(reports[0], reports[1], "portsyncd and neighsyncd disagree");
    // rmem_max is what lets a plain SO_RCVBUF reach the daemons' default
    // buffer: at least half of it (the kernel doubles the request). A
    // minimum the profile checks and never writes.
    let rmem = settings
        .iter()
        .find(|s| s.key == "net.core.rmem_max")
        .expect("net.core.rmem_max is checked");
    assert!(rmem.check_only, "{rmem:?}");
    let rmem: usize = rmem.value.parse().unwrap();
    assert!(rmem >= syncd::engine::runtime::config::NetlinkConfig::default().rcvbuf_bytes);
}

/// Regression (issue 14 item 9): the profile set `net.core.rmem_max =
/// 16777216`, so `sysctl --system` lowered a host tuned higher. What
/// sysctl(8) itself would write from it (`--dry-run`) holds no buffer
/// maximum, only keys that must be exactly so; sysctl-check still checks
/// the minimum, and a profile line that would lower it is said to.
#[test]
fn applying_the_shipped_sysctl_profile_never_lowers_a_buffer_maximum() {
    use syncd::engine::runtime::sysctl_check::{is_at_least, load};
    let profile = repo().join("sysctl/99-portsyncd.conf");
    let out = tool("sysctl", "procps")
        .arg("--dry-run")
        .arg("-p")
        .arg(&profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    assert!(!written.is_empty(), "{}", text(&out));
    let lowering: Vec<&String> = written.keys().filter(|k| is_at_least(k)).collect();
    assert!(
        lowering.is_empty(),
        "applying the profile writes {lowering:?}, lowering any larger live value"
    );
    // sysctl(8) writes exactly the keys sysctl-check does not mark
    // check-only, with the same values.
    let settings = load(&profile).unwrap();
    let want: BTreeMap<String, String> = settings
        .iter()
        .filter(|s| !s.check_only)
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    assert_eq!(written, want);
    assert!(settings.iter().any(|s| s.check_only && is_at_least(&s.key)));
}

// ---------------------------------------------------------------------
// make install / uninstall
// ---------------------------------------------------------------------

/// `make -C <repo> <args>` installing the binaries this test run built
/// (`NO_BUILD=1`: a cargo build from inside the tests would relink the very
/// binaries other tests are running).
fn make(args: &[String]) -> Output {
    let bin = Daemon::binary();
    let built = Path::new(&bin).parent().unwrap();
    assert!(
        built.join("flood").is_file(),
        "{} has no flood binary",
        built.display()
    );
    tool("make", "make")
        .arg("-C")
        .arg(repo())
        .args(args)
        .arg("NO_BUILD=1")
        .arg(format!("RELEASE={}", built.display()))
        .output()
        .unwrap()
}

#[test]
fn make_install_places_every_file_and_uninstall_removes_them() {
    let dest = TempDir::new().unwrap();
    let destdir = format!("DESTDIR={}", dest.path().display());
    let files = [
        "usr/local/bin/portsyncd",
        "usr/local/bin/portsyncd-flood",
        "usr/local/lib/systemd/system/portsyncd.service",
        "etc/sysctl.d/99-portsyncd.conf",
        "etc/sonic/portsyncd.conf.example",
        "usr/local/bin/neighsyncd",
        "usr/local/lib/systemd/system/neighsyncd.service",
        "etc/sonic/neighsyncd.conf.example",
    ];
    let out = make(&["install".into(), destdir.clone()]);
    assert!(out.status.success(), "make install:\n{}", text(&out));
    for f in files {
        let p = dest.path().join(f);
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let want = if f.contains("/bin/") { 0o755 } else { 0o644 };
        assert_eq!(mode, want, "{f}: mode {mode:o}");
    }
    assert_eq!(
        read(dest.path().join(files[3])),
        read(repo().join("sysctl/99-portsyncd.conf"))
    );
    for which in Syncd::ALL {
        let unit = format!("usr/local/lib/systemd/system/{}.service", which.name());
        assert_eq!(read(dest.path().join(unit)), unit_text(which));
    }
    let installed = dest.path().join(files[0]);
    let out = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));

    // Another prefix: the unit's ExecStart= follows the binary.
    let out = make(&["install".into(), destdir.clone(), "PREFIX=/opt/psd".into()]);
    assert!(out.status.success(), "{}", text(&out));
    let unit = read(
        dest.path()
            .join("opt/psd/lib/systemd/system/portsyncd.service"),
    );
    assert_eq!(value(&unit, "ExecStart"), "/opt/psd/bin/portsyncd");
    assert!(dest.path().join("opt/psd/bin/portsyncd").is_file());

    // An operator's config next to the example survives uninstall.
    let live_config = dest.path().join("etc/sonic/portsyncd.conf");
    std::fs::write(&live_config, "# mine\n").unwrap();
    for prefix in ["PREFIX=/usr/local", "PREFIX=/opt/psd"] {
        let out = make(&["uninstall".into(), destdir.clone(), prefix.into()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut left: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dest.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                left.push(p);
            }
        }
    }
    assert_eq!(left, vec![live_config]);
}

/// Regression (issue 14, "a fresh install starts"): the unit ran
/// `portsyncd --config /etc/sonic/portsyncd.conf`, but `make install`
/// ships only the `.example`; a missing file named by `--config` exits 2,
/// which `RestartPreventExitStatus=2` makes final, so a fresh install never
/// started. Each daemon's installed unit, its own command line, on a
/// machine without its config file, must come up (here against a test
/// Redis, named through the environment as a drop-in would).
#[test]
fn a_fresh_install_starts_with_the_installed_units_command_line() {
    for which in Syncd::ALL {
        let default = Path::new(which.config().default_path);
        assert!(
            !default.exists(),
            "{} exists on this machine: this test stands for a fresh install",
            default.display()
        );
    }
    let dest = TempDir::new().unwrap();
    let out = make(&[
        "install".into(),
        format!("DESTDIR={}", dest.path().display()),
    ]);
    assert!(out.status.success(), "make install:\n{}", text(&out));
    let redis = RedisServer::start_with(RedisOptions::default()).unwrap();
    let db = redis.write_database_config(dest.path(), true).unwrap();
    let reactor = std::env::var("TEST_REACTOR").unwrap_or_else(|_| "epoll".into());
    for which in Syncd::ALL {
        let name = which.name();
        let prefix = which.config().env_prefix;
        let unit = read(
            dest.path()
                .join(format!("usr/local/lib/systemd/system/{name}.service")),
        );
        let exec = value(&unit, "ExecStart");
        let mut argv = exec.split_whitespace();
        let program = argv.next().unwrap();
        let args: Vec<&str> = argv.collect();
        // The installed binary, found under the staging root.
        let staged = dest.path().join(program.trim_start_matches('/'));
        assert!(staged.is_file(), "{exec}: {} missing", staged.display());

        let ns = Netns::new().unwrap();
        let (db_var, reactor_var) = (
            format!("{prefix}REDIS_DATABASE_CONFIG"),
            format!("{prefix}RUNTIME_REACTOR"),
        );
        let mut d = Daemon::start_exact(
            &ns,
            &staged,
            &args,
            &[
                (db_var.as_str(), db.to_str().unwrap()),
                (reactor_var.as_str(), &reactor),
            ],
        );
        let msgs = d.notify_messages(Some("READY=1"), Instant::now() + WAIT);
        assert!(
            !lines_with(&msgs, "READY=1").is_empty(),
            "`{exec}` did not become ready (exit status {:?}); notify: {msgs:?}\n{}",
            d.child.try_wait().unwrap(),
            d.log()
        );
        d.stop();
    }
}

// ---------------------------------------------------------------------
// tools/demo under sudo
// ---------------------------------------------------------------------

/// Regression (issue 14): `sudo tools/demo` failed where cargo lives in the
/// user's rustup install (not on root's PATH), and a build as root left a
/// target/ the user could no longer write to. The script runs here for
/// real against stand-ins: a cargo that records who ran it and builds a
/// flood that writes the files it is asked for, in a checkout owned by
/// `nobody`, with a target/ an earlier root run left behind.
#[test]
fn demo_under_sudo_builds_as_the_invoking_user_and_leaves_target_theirs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const NOBODY: u32 = 65534;
    let dir = TempDir::new().unwrap();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(dir.path(), 0o755);
    let checkout = dir.path().join("checkout");
    std::fs::create_dir_all(checkout.join("tools")).unwrap();
    std::fs::create_dir_all(checkout.join("target/release")).unwrap();
    std::fs::copy(repo().join("tools/demo"), checkout.join("tools/demo")).unwrap();
    std::fs::write(checkout.join("tools/install-deps"), "#!/bin/sh\nexit 0\n").unwrap();
    mode(&checkout.join("tools/install-deps"), 0o755);
    let cargo = dir.path().join("cargo");
    std::fs::write(
        &cargo,
        r#"#!/bin/sh
{ id -un; echo "$@"; } > cargo-ran-as
cat > target/release/flood <<'FLOOD'
#!/bin/sh
id -un > flood-ran-as
while [ $# -gt 0 ]; do
    case "$1" in --json|--plot) : > "$2"; shift;; esac
    shift
done
FLOOD
chmod 0755 target/release/flood
"#,
    )
    .unwrap();
    mode(&cargo, 0o755);
    // The checkout is the user's; target/ (left by a root run) is not.
    let out = Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(&checkout)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::os::unix::fs::chown(checkout.join("target"), Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(checkout.join("target/release"), Some(0), Some(0)).unwrap();

    // sudo's environment: root's secure PATH, with no cargo on it.
    let demo = |cargo_env: Option<&Path>| {
        let mut c = Command::new("bash");
        c.arg(checkout.join("tools/demo"))
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SUDO_USER", "nobody")
            .current_dir(dir.path());
        if let Some(p) = cargo_env {
            c.env("CARGO", p);
        }
        c.output().unwrap()
    };
    // No cargo for the user: a message saying so, nothing built.
    let out = demo(None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cargo not found for nobody"),
        "{}",
        text(&out)
    );

    let out = demo(Some(&cargo));
    assert!(out.status.success(), "tools/demo:\n{}", text(&out));
    assert_eq!(
        read(checkout.join("cargo-ran-as")),
        "nobody\nbuild --release --locked\n"
    );
    assert_eq!(read(checkout.join("flood-ran-as")), "root\n");
    for f in [
        "target",
        "target/release",
        "target/demo.json",
        "target/demo.svg",
    ] {
        let uid = std::fs::metadata(checkout.join(f)).unwrap().uid();
        assert_eq!(uid, NOBODY, "{f} is owned by uid {uid}");
    }
}

/// neighsyncd's example config, uncommented, is its defaults (they differ
/// from portsyncd's: write buffer, ring, coalescing), as the binary reads
/// it; and every key is in it.
#[test]
fn neighsyncds_example_config_shows_every_key_with_its_default() {
    let run = |args: &[&str]| {
        Command::new(Daemon::neighsyncd_binary())
            .args(args)
            .output()
            .unwrap()
    };
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("neighsyncd.conf");
    std::fs::write(&path, uncommented("config/neighsyncd.conf.example")).unwrap();
    let from_example = run(&["--config", path.to_str().unwrap(), "--print-config"]);
    let defaults = run(&["--config", "/dev/null", "--print-config"]);
    assert_eq!(
        from_example.status.code(),
        Some(0),
        "{}",
        text(&from_example)
    );
    assert_eq!(text(&from_example), text(&defaults));
    let shown: toml::Table = text(&defaults).parse().unwrap();
    assert_eq!(shown["runtime"]["coalesce_us"].as_integer(), Some(1000));
    let example = read(repo().join("config/neighsyncd.conf.example"));
    for (section, keys) in &shown {
        for key in keys.as_table().unwrap().keys() {
            assert!(
                example.contains(&format!("#{key} = ")) || example.contains(&format!("{key} = ")),
                "{section}.{key} not in the example"
            );
        }
    }
}

/// neighsyncd's `--help` names every section and key its configuration has.
#[test]
fn neighsyncds_help_names_every_section_and_key() {
    let run = |args: &[&str]| {
        Command::new(Daemon::neighsyncd_binary())
            .args(args)
            .output()
            .unwrap()
    };
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let shown = run(&["--config", "/dev/null", "--print-config"]);
    let table: toml::Table = String::from_utf8_lossy(&shown.stdout).parse().unwrap();
    for (section, keys) in table {
        assert!(
            help.contains(&format!("[{section}]")),
            "[{section}] not in --help"
        );
        for key in keys.as_table().unwrap().keys() {
            assert!(
                help.lines()
                    .any(|l| l.split_whitespace().next() == Some(key.as_str())),
                "{section}.{key} not in neighsyncd --help"
            );
        }
    }
}
