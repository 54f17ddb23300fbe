//! What is measured, and its teardown: for `run` a private redis-server,
//! namespaces, ports and the daemon; for `attach` an existing daemon and
//! Redis plus the floor's private namespace. Every part is torn down by
//! `Drop`, in reverse order of creation, on success, failure and Ctrl-C.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncd::engine::redis::client::Client;
use syncd::engine::redis::socket::poll;
use syncd::engine::sonic::dbconfig::{Address, Databases};
use testbed::{Netns, RedisServer, TempDir};

use crate::cli::{Options, RedisSource};
use crate::signal::Stop;
use crate::watch::pollfd;
use crate::Error;

/// How long the daemon may take to report `READY=1`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit on SIGTERM before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);
/// SONiC's database numbers, which the floor must not write into.
const SONIC_DBS: [u32; 3] = [0, 4, 6];

/// The daemon under test, in its namespace.
pub struct DaemonProcess {
    child: Child,
    pidfd: OwnedFd,
    notify: UnixDatagram,
    log_path: PathBuf,
    keep_log: Option<PathBuf>,
    /// Monotonic time just before it was spawned.
    spawned_ns: u64,
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, Error> {
    // SAFETY: pidfd_open(2) on our own child; the result is checked, then owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::failed(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` is a fresh fd owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn poll_in(fds: &[i32], timeout: Duration) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds.iter().map(|&fd| pollfd(fd)).collect();
    if !matches!(poll(&mut p, Some(timeout)), Ok(n) if n > 0) {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents != 0).collect()
}

/// Whether `bin` takes `log.output` (asked with `--print-config`, which
/// does nothing else).
fn knows_log_output(bin: &Path, conf: &Path) -> bool {
    Command::new(bin)
        .arg("--config")
        .arg(conf)
        .args(["--print-config", "--set", "log.output=stderr"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl DaemonProcess {
    /// Start `bin` inside `netns` with its own notify socket and log.
    pub fn start(
        bin: &Path,
        netns: &str,
        database_config: &Path,
        sets: &[String],
        dir: &Path,
        keep_log: Option<PathBuf>,
    ) -> Result<DaemonProcess, Error> {
        let notify_path = dir.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path)
            .map_err(|e| Error::failed(format!("notify socket {}: {e}", notify_path.display())))?;
        let log_path = dir.join("daemon.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Error::failed(format!("{}: {e}", log_path.display())))?;
        let conf = dir.join("empty.toml");
        std::fs::write(&conf, "").map_err(|e| Error::failed(format!("{}: {e}", conf.display())))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(bin)
            .arg("--config")
            .arg(&conf)
            .arg("--set")
            .arg(format!(
                "redis.database_config={}",
                database_config.display()
            ))
            .args(["--set", "metrics.listen=", "--set", "log.level=notice"]);
        // The log (its totals line) is read from stderr, so keep it there
        // on a machine with /dev/log, which `auto` would pick; a build from
        // before `log.output` logs only to stderr and would refuse the key.
        if knows_log_output(bin, &conf) {
            cmd.args(["--set", "log.output=stderr"]);
        }
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        cmd.env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches flood only,
            // which then stops the daemon in order.
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and
        // only calls prctl(2), sigemptyset(3) and pthread_sigmask(3) on a
        // local set, which are async-signal-safe. If flood dies without
        // cleaning up (SIGKILL), the kernel kills the daemon. flood blocks
        // SIGTERM (signal::install) and children inherit the mask: a daemon
        // without a signalfd of its own (SONiC's C++ ones) must see the
        // SIGTERM that stops it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let spawned_ns = syncd::engine::sys::monotonic_ns();
        let child = cmd
            .spawn()
            .map_err(|e| Error::failed(format!("starting {}: {e}", bin.display())))?;
        let pidfd = pidfd_open(child.id() as i32)?;
        Ok(DaemonProcess {
            child,
            pidfd,
            notify,
            log_path,
            keep_log,
            spawned_ns,
        })
    }

    /// Monotonic time just before the daemon was spawned.
    pub fn spawned_ns(&self) -> u64 {
        self.spawned_ns
    }

    /// `ip netns exec` execs the daemon: same pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut s);
        }
        if s.trim().is_empty() {
            "(empty log)".into()
        } else {
            s
        }
    }

    /// Wait for `READY=1`, failing early if the daemon exits.
    pub fn wait_ready(&mut self, stop: &Stop) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::failed(format!(
                    "the daemon did not report READY=1 within {READY_TIMEOUT:?}; its log:\n{}",
                    self.log_tail()
                )));
            }
            let ready = poll_in(
                &[self.notify.as_raw_fd(), self.pidfd.as_raw_fd(), stop.fd()],
                left,
            );
            if ready[2] {
                return Err(Error::Interrupted);
            }
            if ready[1] {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(Error::failed(format!(
                    "the daemon exited during start-up ({status}); its log:\n{}",
                    self.log_tail()
                )));
            }
            if ready[0] {
                if let Ok(n) = self.notify.recv(&mut buf) {
                    if String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .any(|l| l == "READY=1")
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// An error if the daemon is no longer running.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::failed(format!(
                "the daemon died during the run ({status}); its log:\n{}",
                self.log_tail()
            ))),
            Err(e) => Err(Error::failed(format!("waiting for the daemon: {e}"))),
        }
    }
}

impl DaemonProcess {
    /// SIGTERM (SIGKILL after a grace period), and reap it.
    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            // SIGCONT first: a daemon left stopped (SIGSTOP) cannot act on
            // SIGTERM.
            unsafe {
                libc::kill(self.pid(), libc::SIGCONT);
                libc::kill(self.pid(), libc::SIGTERM);
            }
            let exited = poll_in(&[self.pidfd.as_raw_fd()], EXIT_GRACE)[0];
            if !exited {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }

    /// Stop the daemon in order and return the counters of the `totals:`
    /// line it logs at exit (empty if it logged none).
    pub fn stop(&mut self) -> Vec<(String, u64)> {
        self.terminate();
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.lines()
            .rev()
            .find_map(|l| l.split_once("totals: ").map(|(_, t)| parse_totals(t)))
            .unwrap_or_default()
    }
}

/// `datagrams 5 newlink 3 …` → [("datagrams", 5), ("newlink", 3), …].
fn parse_totals(text: &str) -> Vec<(String, u64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, v] => v.parse().ok().map(|v| (k.to_string(), v)),
            _ => None,
        })
        .collect()
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.terminate();
        if let Some(keep) = &self.keep_log {
            if let Err(e) = std::fs::copy(&self.log_path, keep) {
                eprintln!(
                    "flood: cannot keep the daemon log as {}: {e}",
                    keep.display()
                );
            }
        }
    }
}

/// Sets `notify-keyspace-events` back as it was (attach).
pub struct KeyspaceRestore {
    addr: Address,
    original: String,
}

impl Drop for KeyspaceRestore {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.addr, Duration::from_secs(5)) {
            let _ = c.cmd(&["CONFIG", "SET", "notify-keyspace-events", &self.original]);
        }
    }
}

/// Deletes the floor's keys from its database at the end.
struct FloorKeys {
    addr: Address,
    db: u32,
    ports: Vec<String>,
    separator: char,
}

impl Drop for FloorKeys {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect_db(&self.addr, self.db, Duration::from_secs(5)) {
            for p in &self.ports {
                let _ = c.cmd(&["DEL", &format!("PORT_TABLE{}{p}", self.separator)]);
            }
        }
    }
}

/// The daemon, its Redis and ports, and the floor's twin: what is measured.
pub struct Bench {
    pub ports: Vec<String>,
    pub dut_netns: Option<String>,
    pub floor_netns: Option<String>,
    /// STATE_DB's Redis, database and key separator.
    pub address: Address,
    pub state_db: u32,
    pub separator: u8,
    pub floor_db: u32,
    pub daemon_pid: Option<i32>,
    /// Whether the ports are veths with their peer up (oper follows admin).
    pub veth_ports: bool,
    pub description: String,
    // Owned parts; dropped in this order.
    daemon: Option<DaemonProcess>,
    _floor_keys: Option<FloorKeys>,
    _keyspace: Option<KeyspaceRestore>,
    _dut_ns: Option<Netns>,
    _floor_ns: Option<Netns>,
    redis: Option<RedisServer>,
    _dir: Option<TempDir>,
}

fn tb(what: &str) -> impl FnOnce(testbed::TestbedError) -> Error + '_ {
    move |e| Error::failed(format!("{what}: {e}"))
}

fn check_floor_db(o: &Options, used: &[u32]) -> Result<(), Error> {
    if o.floor && used.contains(&o.floor_db) {
        return Err(Error::Usage(format!(
            "--floor-db {} is one of the databases SONiC uses ({used:?}); pick another",
            o.floor_db
        )));
    }
    Ok(())
}

/// The daemon binary `run` starts.
pub fn daemon_path(o: &Options) -> Result<PathBuf, Error> {
    find_daemon(o.daemon.as_deref(), "portsyncd")
}

/// `--daemon`'s binary, or `sibling` next to this flood binary.
pub fn find_daemon(given: Option<&Path>, sibling: &str) -> Result<PathBuf, Error> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| Error::failed(format!("locating the flood binary: {e}")))?;
            exe.with_file_name(sibling)
        }
    };
    if !path.is_file() {
        return Err(Error::Usage(format!(
            "--daemon: no daemon binary at {} (build it: cargo build --release)",
            path.display()
        )));
    }
    path.canonicalize()
        .map_err(|e| Error::Usage(format!("--daemon {}: {e}", path.display())))
}

fn add_ports(ns: &Netns, ports: &[String], stop: &Stop) -> Result<(), Error> {
    for p in ports {
        if stop.requested() {
            return Err(Error::Interrupted);
        }
        ns.add_port(p)
            .map_err(tb(&format!("creating port {p} in {}", ns.name)))?;
    }
    Ok(())
}

impl Bench {
    /// `flood run`: everything private.
    pub fn run(o: &Options, stop: &Stop) -> Result<Bench, Error> {
        check_floor_db(o, &SONIC_DBS)?;
        let bin = daemon_path(o)?;
        let pid = std::process::id();
        let dir = TempDir::new().map_err(tb("temporary directory"))?;
        let redis = RedisServer::start().map_err(tb("redis-server"))?;
        let names: Vec<&str> = o.ports.iter().map(String::as_str).collect();
        redis
            .configure_ports(&names)
            .map_err(tb("CONFIG_DB PORT entries"))?;
        let dut_ns = Netns::create(&format!("flood-{pid}-dut")).map_err(tb("namespace"))?;
        let mut bench = Bench {
            ports: o.ports.clone(),
            dut_netns: Some(dut_ns.name.clone()),
            floor_netns: None,
            address: redis.address(),
            state_db: 6,
            separator: b'|',
            floor_db: o.floor_db,
            daemon_pid: None,
            veth_ports: true,
            description: format!(
                "{} ports in namespace {}, daemon {}",
                o.ports.len(),
                dut_ns.name,
                bin.display()
            ),
            daemon: None,
            _floor_keys: None,
            _keyspace: None,
            _dut_ns: Some(dut_ns),
            _floor_ns: None,
            redis: Some(redis),
            _dir: None,
        };
        if o.floor {
            let ns = Netns::create(&format!("flood-{pid}-floor")).map_err(tb("namespace"))?;
            bench.floor_netns = Some(ns.name.clone());
            bench._floor_ns = Some(ns);
        }
        let redis = bench
            .redis
            .as_ref()
            .ok_or_else(|| Error::failed("no redis"))?;
        let dbconfig = redis
            .write_database_config(dir.path(), true)
            .map_err(tb("database_config.json"))?;
        let ns_name = bench.dut_netns.clone().unwrap_or_default();
        let mut daemon = DaemonProcess::start(
            &bin,
            &ns_name,
            &dbconfig,
            &o.daemon_sets,
            dir.path(),
            o.daemon_log.clone(),
        )?;
        bench.daemon_pid = Some(daemon.pid());
        let ready = daemon.wait_ready(stop);
        bench.daemon = Some(daemon);
        bench._dir = Some(dir);
        ready?;
        // Orchagent's part: take the configured ports into PORT_TABLE.
        let redis = bench
            .redis
            .as_ref()
            .ok_or_else(|| Error::failed("no redis"))?;
        let mut popped = redis.orchagent_pop().map_err(tb("orchagent step"))?;
        popped.retain(|k| !k.starts_with("Port"));
        if popped.len() != o.ports.len() {
            return Err(Error::failed(format!(
                "the daemon pushed {} ports to APPL_DB PORT_TABLE, expected {}: {popped:?}",
                popped.len(),
                o.ports.len()
            )));
        }
        Ok(bench)
    }

    /// Create the ports: in the daemon's namespace (`run`: after the daemon
    /// is ready, as on a switch) and in the floor's twin. Call it once the
    /// watcher and the floor listen, so the floor sees them appear.
    pub fn create_ports(&self, stop: &Stop) -> Result<(), Error> {
        if let Some(ns) = &self._dut_ns {
            add_ports(ns, &self.ports, stop)?;
        }
        if let Some(ns) = &self._floor_ns {
            add_ports(ns, &self.ports, stop)?;
        }
        Ok(())
    }

    /// `run`: wait for the daemon's `PortInitDone` (orchagent's step pops it).
    pub fn wait_port_init_done(&self) -> Result<(), Error> {
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        redis
            .wait_until("APPL_DB PortInitDone from the daemon", |r| {
                Ok(r.orchagent_pop()?.iter().any(|k| k == "PortInitDone"))
            })
            .map_err(|e| {
                let log = self
                    .daemon
                    .as_ref()
                    .map(|d| d.log_tail())
                    .unwrap_or_default();
                Error::failed(format!("{e}; daemon log:\n{log}"))
            })
    }

    /// `flood attach`: the daemon and Redis exist; the floor's twin is ours.
    pub fn attach(o: &Options) -> Result<Bench, Error> {
        let (address, state_db, separator, used) = match &o.redis {
            RedisSource::Address(a) => (parse_address(a)?, 6, b'|', SONIC_DBS.to_vec()),
            RedisSource::DatabaseConfig(p) => {
                let dbs = Databases::load(p).map_err(|e| Error::Usage(e.to_string()))?;
                (
                    dbs.state.instance.address(),
                    dbs.state.id,
                    dbs.state.separator,
                    vec![dbs.appl.id, dbs.config.id, dbs.state.id],
                )
            }
        };
        check_floor_db(o, &used)?;
        if let Some(ns) = &o.netns {
            if !Path::new(&format!("/var/run/netns/{ns}")).exists() {
                return Err(Error::Usage(format!(
                    "--netns: no network namespace {ns:?} (see ip netns list)"
                )));
            }
        }
        let mut c = Client::connect(&address, Duration::from_secs(5))
            .map_err(|e| Error::failed(format!("connecting to Redis at {address}: {e}")))?;
        let keyspace = ensure_keyspace_events(&mut c, &address)?;
        let mut bench = Bench {
            ports: o.ports.clone(),
            dut_netns: o.netns.clone(),
            floor_netns: None,
            address: address.clone(),
            state_db,
            separator,
            floor_db: o.floor_db,
            daemon_pid: o.pid,
            veth_ports: false,
            description: format!(
                "{} ports in namespace {}, Redis {address} STATE_DB {state_db}{}",
                o.ports.len(),
                o.netns.as_deref().unwrap_or("(current)"),
                o.pid
                    .map(|p| format!(", daemon pid {p}"))
                    .unwrap_or_default()
            ),
            daemon: None,
            _floor_keys: None,
            _keyspace: keyspace,
            _dut_ns: None,
            _floor_ns: None,
            redis: None,
            _dir: None,
        };
        if let Some(pid) = o.pid {
            if crate::procfs::process_cpu(pid).is_none() {
                return Err(Error::Usage(format!("--pid: no process {pid}")));
            }
        }
        if o.floor {
            let ns = Netns::create(&format!("flood-{}-floor", std::process::id()))
                .map_err(tb("namespace"))?;
            bench.floor_netns = Some(ns.name.clone());
            bench._floor_ns = Some(ns);
            bench._floor_keys = Some(FloorKeys {
                addr: address,
                db: o.floor_db,
                ports: o.ports.clone(),
                separator: separator as char,
            });
        }
        Ok(bench)
    }

    /// `run`: stop the daemon in order; the counters of its `totals:` line.
    pub fn stop_daemon(&mut self) -> Vec<(String, u64)> {
        match self.daemon.as_mut() {
            Some(d) => d.stop(),
            None => Vec::new(),
        }
    }

    /// The end of the daemon's log (`run`), for error messages.
    pub fn daemon_log_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(|d| d.log_tail())
            .unwrap_or_default()
    }

    /// An error (with its log) if the daemon we started has died.
    pub fn check_daemon(&mut self) -> Result<(), Error> {
        match self.daemon.as_mut() {
            Some(d) => d.check_alive(),
            None => Ok(()),
        }
    }
}

/// `unix:PATH`, a path, or `HOST:PORT`.
pub fn parse_address(a: &str) -> Result<Address, Error> {
    if let Some(p) = a.strip_prefix("unix:") {
        return Ok(Address::Unix(PathBuf::from(p)));
    }
    if a.starts_with('/') || a.ends_with(".sock") {
        return Ok(Address::Unix(PathBuf::from(a)));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => match port.parse() {
            Ok(port) => Ok(Address::Tcp(host.to_string(), port)),
            Err(_) => Err(Error::Usage(format!(
                "--redis: {a:?} has no valid port after ':'"
            ))),
        },
        _ => Err(Error::Usage(format!(
            "--redis: {a:?} is neither unix:PATH nor HOST:PORT"
        ))),
    }
}

/// Turn on the keyspace notifications flood needs (`K` and hash events),
/// remembering the old setting to put back.
pub fn ensure_keyspace_events(
    c: &mut Client,
    addr: &Address,
) -> Result<Option<KeyspaceRestore>, Error> {
    let v = c
        .cmd(&["CONFIG", "GET", "notify-keyspace-events"])
        .map_err(|e| Error::failed(format!("CONFIG GET notify-keyspace-events: {e}")))?;
    let original = v
        .items()
        .get(1)
        .and_then(|x| x.as_string())
        .unwrap_or_default();
    let has_k = original.contains('K');
    let has_h = original.contains('h') || original.contains('A');
    if has_k && has_h {
        return Ok(None);
    }
    let mut flags = original.clone();
    if !has_k {
        flags.push('K');
    }
    if !has_h {
        flags.push('h');
    }
    let r = c
        .cmd(&["CONFIG", "SET", "notify-keyspace-events", &flags])
        .map_err(|e| Error::failed(format!("CONFIG SET notify-keyspace-events: {e}")))?;
    if let Some(e) = r.error() {
        return Err(Error::failed(format!(
            "CONFIG SET notify-keyspace-events {flags}: {e}"
        )));
    }
    eprintln!(
        "flood: notify-keyspace-events was {original:?}; set to {flags:?} for the run, restored after"
    );
    Ok(Some(KeyspaceRestore {
        addr: addr.clone(),
        original,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("unix:/r.sock").unwrap(),
            Address::Unix("/r.sock".into())
        );
        assert_eq!(
            parse_address("127.0.0.1:6379").unwrap(),
            Address::Tcp("127.0.0.1".into(), 6379)
        );
        assert!(parse_address("localhost").is_err());
        assert!(parse_address("h:x").is_err());
    }

    #[test]
    fn totals_line() {
        let t = parse_totals("datagrams 12 newlink 10 enobufs 2 resyncs 2");
        assert_eq!(t[2], ("enobufs".to_string(), 2));
        assert_eq!(t.len(), 4);
    }
}
