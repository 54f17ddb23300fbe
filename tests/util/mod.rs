//! Test-only helpers on top of `testbed`: the real `portsyncd`
//! binary with a notify socket, torn down on drop.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Instant;

use syncd::engine::redis::client::Value;
pub use testbed::*;

/// Metrics test helpers: HTTP inside a namespace, independent counts.
pub mod metrics;

/// The real `portsyncd`, run inside a namespace, with a notify socket to
/// learn when it is ready. Killed on drop.
pub struct Daemon {
    pub child: Child,
    notify: UnixDatagram,
    pub dir: TempDir,
    log_path: PathBuf,
}

/// How to run the daemon.
pub struct DaemonOptions {
    /// `--set section.key=value` arguments.
    pub sets: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Use the unix socket (else TCP).
    pub unix: bool,
    /// A command the daemon runs under (e.g. `setpriv --bounding-set=…`).
    pub wrap: Vec<String>,
    /// Start it under a seccomp filter that refuses `io_uring_setup` (EPERM),
    /// as a locked-down container would.
    pub deny_io_uring: bool,
    /// The binary (default: portsyncd, see [`Daemon::binary`]).
    pub binary: Option<String>,
}

/// Install a seccomp filter refusing `io_uring_setup` with EPERM. Runs in
/// the child between fork and exec: only async-signal-safe calls.
fn deny_io_uring_setup() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel copies it.
    if unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Default for DaemonOptions {
    fn default() -> Self {
        // The whole suite runs once per reactor: tools/test-all sets this.
        let reactor = std::env::var("TEST_REACTOR").unwrap_or_else(|_| "epoll".into());
        DaemonOptions {
            sets: vec![
                "metrics.listen=".into(),
                format!("runtime.reactor={reactor}"),
            ],
            env: vec![],
            unix: true,
            wrap: vec![],
            deny_io_uring: false,
            binary: None,
        }
    }
}

impl Daemon {
    /// The daemon under test: this build's, or the one
    /// `TEST_PORTSYNCD_BIN` names (to show a new test fails on an older
    /// build, e.g. `TEST_PORTSYNCD_BIN=/tmp/old/portsyncd cargo test --test chaos`).
    pub fn binary() -> String {
        std::env::var("TEST_PORTSYNCD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_portsyncd").to_string())
    }

    /// The neighsyncd under test: this build's, or `TEST_NEIGHSYNCD_BIN`.
    pub fn neighsyncd_binary() -> String {
        std::env::var("TEST_NEIGHSYNCD_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_neighsyncd").to_string())
    }

    pub fn start(ns: &Netns, redis: &RedisServer) -> Daemon {
        Daemon::start_with(ns, redis, DaemonOptions::default())
    }

    pub fn start_with(ns: &Netns, redis: &RedisServer, opts: DaemonOptions) -> Daemon {
        let dir = TempDir::new().unwrap();
        let db = redis.write_database_config(dir.path(), opts.unix).unwrap();
        let binary = opts.binary.clone().unwrap_or_else(Daemon::binary);
        let mut cmd = match opts.wrap.split_first() {
            Some((program, args)) => {
                let mut c = ns.command(program);
                c.args(args).arg(&binary);
                c
            }
            None => ns.command(&binary),
        };
        cmd.arg("--set")
            .arg(format!("redis.database_config={}", db.display()));
        Daemon::spawn(cmd, dir, &opts)
    }

    /// Run from the test's own network namespace (the host's, to the
    /// daemon), not inside one, with `args` added (`--namespace NS`): as
    /// an operator on a multi-ASIC host runs it. No database config is
    /// written; `args` say where the databases are.
    pub fn start_on_host(args: &[&str], opts: DaemonOptions) -> Daemon {
        let dir = TempDir::new().unwrap();
        let binary = opts.binary.clone().unwrap_or_else(Daemon::binary);
        let mut cmd = std::process::Command::new(binary);
        cmd.args(args);
        Daemon::spawn(cmd, dir, &opts)
    }

    /// Add the test's configuration (an empty `--config`, a stderr log at
    /// info, `opts`) and a notify socket to `cmd`, and start it.
    fn spawn(mut cmd: std::process::Command, dir: TempDir, opts: &DaemonOptions) -> Daemon {
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).unwrap();
        cmd.arg("--config").arg(dir.path().join("none.toml"));
        std::fs::write(dir.path().join("none.toml"), "").unwrap();
        // Tests read the log from stderr, whether or not this machine has
        // a /dev/log (which `auto` would pick).
        cmd.args(["--set", "log.level=info", "--set", "log.output=stderr"]);
        for s in &opts.sets {
            cmd.arg("--set").arg(s);
        }
        cmd.env("NOTIFY_SOCKET", &notify_path);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(log);
        if opts.deny_io_uring {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure only makes two prctl calls, which are
            // async-signal-safe, between fork and exec.
            unsafe { cmd.pre_exec(deny_io_uring_setup) };
        }
        let child = cmd.spawn().unwrap();
        Daemon {
            child,
            notify,
            dir,
            log_path,
        }
    }

    /// Exactly `program args`, in `ns`, as a unit's `ExecStart=` would run
    /// it: no `--config` or `--set` added, none of the runner's
    /// `PORTSYNCD_*` or `NEIGHSYNCD_*` variables; only `env`, a notify socket and a log.
    pub fn start_exact(
        ns: &Netns,
        program: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = TempDir::new().unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = ns.command(program.to_str().unwrap());
        cmd.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("PORTSYNCD_")
                || k.starts_with("NEIGHSYNCD_")
                || k.starts_with("WATCHDOG_")
            {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.env("NOTIFY_SOCKET", &notify_path);
        cmd.stdout(Stdio::null()).stderr(log);
        Daemon {
            child: cmd.spawn().unwrap(),
            notify,
            dir,
            log_path,
        }
    }

    /// Wait for the next notify message containing `needle` (e.g. `READY=1`).
    pub fn wait_notify(&self, needle: &str) -> String {
        let msgs = self.notify_messages(Some(needle), Instant::now() + WAIT);
        match msgs.last() {
            Some(last) if last.contains(needle) => last.clone(),
            _ => panic!("no {needle:?} from the daemon; log:\n{}", self.log()),
        }
    }

    /// Wait for `READY=1`: start-up (initial dump, config push) is done.
    pub fn wait_ready(&self) {
        self.wait_notify("READY=1");
    }

    /// The (initially empty) config file the daemon was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("none.toml")
    }

    /// Wait until the log holds `needle`; woken by inotify on the log file.
    pub fn wait_log(&self, needle: &str) -> String {
        // SAFETY: plain inotify_init1; the fd is owned right below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh fd owned by no one else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let path = std::ffi::CString::new(self.log_path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `path` is a valid NUL-terminated string; `raw` is live.
        let wd = unsafe { libc::inotify_add_watch(raw, path.as_ptr(), libc::IN_MODIFY) };
        assert!(
            wd >= 0,
            "inotify_add_watch: {}",
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} in the log:\n{log}");
            let mut pfd = libc::pollfd {
                fd: raw,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            let mut buf = [0u8; 4096];
            // SAFETY: `buf` is valid for writes of its length; drains the events.
            unsafe { libc::read(raw, buf.as_mut_ptr().cast(), buf.len()) };
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> i32 {
        // `ip netns exec` execs the program: same pid.
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill -{sig} {}", self.pid());
    }

    /// Wait for exit, at most `WAIT`; its exit status. Woken by the exit
    /// itself (a pidfd becomes readable), not by polling.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        if let Some(status) = self.child.try_wait().unwrap() {
            return status;
        }
        // SAFETY: pidfd_open on our own child's pid; the fd is owned below.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid(), 0) } as i32;
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh fd owned by no one else.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as i32) };
        assert!(
            n > 0,
            "daemon did not exit within {WAIT:?}; log:\n{}",
            self.log()
        );
        self.child.wait().unwrap()
    }

    /// Stop it the way an operator does (SIGTERM), require exit 0, and
    /// return its log.
    pub fn stop(&mut self) -> String {
        assert!(self.alive(), "the daemon died:\n{}", self.log());
        self.signal(libc::SIGTERM);
        assert_eq!(self.wait_exit().code(), Some(0), "log:\n{}", self.log());
        self.log()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- daemon log ----\n{}", self.log());
        }
    }
}

/// A daemon we ship. What holds for every daemon (its unit, its logging,
/// its metrics endpoint) is tested for each of [`Syncd::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syncd {
    Portsyncd,
    Neighsyncd,
}

impl Syncd {
    pub const ALL: [Syncd; 2] = [Syncd::Portsyncd, Syncd::Neighsyncd];

    pub fn name(self) -> &'static str {
        self.config().name
    }

    /// Its build under test ([`Daemon::binary`], [`Daemon::neighsyncd_binary`]).
    pub fn binary(self) -> String {
        match self {
            Syncd::Portsyncd => Daemon::binary(),
            Syncd::Neighsyncd => Daemon::neighsyncd_binary(),
        }
    }

    /// Its configuration's defaults: config path, environment prefix,
    /// metrics port.
    pub fn config(self) -> &'static syncd::engine::runtime::config::DaemonConfig {
        match self {
            Syncd::Portsyncd => &syncd::engine::runtime::config::PORTSYNCD,
            Syncd::Neighsyncd => &syncd::engine::runtime::config::NEIGHSYNCD,
        }
    }

    /// The default options, running this daemon.
    pub fn options(self) -> DaemonOptions {
        DaemonOptions {
            binary: Some(self.binary()),
            ..DaemonOptions::default()
        }
    }

    /// What the daemon needs before it starts: portsyncd, `Ethernet0` in
    /// CONFIG_DB; neighsyncd, `Ethernet0` up in `ns` with 10.0.0.1/24.
    pub fn prepare(self, ns: &Netns, redis: &RedisServer) {
        match self {
            Syncd::Portsyncd => redis.configure_ports(&["Ethernet0"]).unwrap(),
            Syncd::Neighsyncd => {
                ns.add_port("Ethernet0").unwrap();
                ns.set_up("Ethernet0").unwrap();
                ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "Ethernet0"])
                    .unwrap();
            }
        }
    }

    /// Once ready (after [`Syncd::prepare`]): one real change in `ns`,
    /// waited for in Redis. portsyncd: orchagent pops the port config,
    /// `Ethernet0` appears and comes up in STATE_DB; neighsyncd: neighbor
    /// 10.0.0.2 on `Ethernet0` reaches APPL_DB `NEIGH_TABLE`.
    pub fn exercise(self, ns: &Netns, redis: &RedisServer) {
        match self {
            Syncd::Portsyncd => {
                redis.orchagent_pop().unwrap();
                ns.add_port("Ethernet0").unwrap();
                redis.wait_state("Ethernet0", "down", "down", 1500).unwrap();
                ns.set_up("Ethernet0").unwrap();
                redis.wait_state("Ethernet0", "up", "up", 1500).unwrap();
            }
            Syncd::Neighsyncd => {
                ns.ip(&[
                    "neigh",
                    "add",
                    "10.0.0.2",
                    "lladdr",
                    "02:00:00:00:00:02",
                    "dev",
                    "Ethernet0",
                    "nud",
                    "permanent",
                ])
                .unwrap();
                let key = "NEIGH_TABLE:Ethernet0:10.0.0.2";
                redis
                    .wait_until(&format!("{key} in APPL_DB"), |r| {
                        r.orchagent_pop_table("NEIGH_TABLE")?;
                        Ok(r.hgetall(0, key)?
                            == [
                                ("family".to_string(), "IPv4".to_string()),
                                ("neigh".to_string(), "02:00:00:00:00:02".to_string()),
                            ])
                    })
                    .unwrap();
            }
        }
    }
}

/// Read every value of a reply as text (for asserts).
pub fn strings(v: &Value) -> Vec<String> {
    v.items().iter().filter_map(|i| i.as_string()).collect()
}

/// The notify protocol itself, for tests/ops.rs.
impl Daemon {
    /// Every notify message received before `deadline`, in order,
    /// stopping after the first one that contains `until` (when given).
    pub fn notify_messages(&self, until: Option<&str>, deadline: Instant) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.notify.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = until.is_some_and(|u| msg.contains(u));
                out.push(msg);
                if done {
                    return out;
                }
            }
        }
    }
}

/// `Ethernet0`, `Ethernet4`, … — `n` port names the way a switch numbers them.
pub fn port_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Ethernet{}", 4 * i)).collect()
}

/// Borrow a list of names.
pub fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(|s| s.as_str()).collect()
}

/// Wait until STATE_DB equals the kernel for every name (absent when the
/// netdev is gone).
pub fn wait_converged(ns: &Netns, redis: &RedisServer, names: &[String]) {
    let updown = |b: bool| if b { "up" } else { "down" };
    for n in names {
        match ns.link_state(n) {
            Some((admin, oper, mtu)) => redis
                .wait_state(n, updown(admin), updown(oper), mtu)
                .unwrap(),
            None => redis.wait_state_absent(n).unwrap(),
        }
    }
}

/// The value of counter `name` in the daemon's final "totals:" log line.
pub fn total(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("totals:"))
        .expect("a totals line in the log");
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("no {name} in {line}");
}

/// Make the next start a warm one with `restore_count` (SONiC's flags).
pub fn enable_warm_restart(redis: &RedisServer, restore_count: u64) {
    redis
        .cmd(
            6,
            &["HSET", "WARM_RESTART_ENABLE_TABLE|system", "enable", "true"],
        )
        .unwrap();
    redis
        .cmd(
            6,
            &[
                "HSET",
                "WARM_RESTART_TABLE|portsyncd",
                "restore_count",
                &restore_count.to_string(),
            ],
        )
        .unwrap();
}
