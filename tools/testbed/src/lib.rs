//! A private test bed of real parts: a `redis-server` on a unix socket and
//! a TCP port, and a network namespace with veth ports named like a
//! switch's (`Ethernet0`, `Ethernet4`, …). Used by the integration tests and
//! by `flood`. Everything is torn down on drop, also on a panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use syncd::engine::redis::client::Client;
use syncd::engine::sonic::dbconfig::Address;

/// What went wrong setting up or using the test bed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestbedError(pub String);

impl std::fmt::Display for TestbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestbedError {}

/// Results of the test bed.
pub type Result<T> = std::result::Result<T, TestbedError>;

fn err(what: impl std::fmt::Display) -> TestbedError {
    TestbedError(what.to_string())
}

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir> {
        let p = std::env::temp_dir().join(unique("portsyncd-"));
        std::fs::create_dir_all(&p).map_err(|e| err(format!("creating {}: {e}", p.display())))?;
        Ok(TempDir(p))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run a command that must succeed; its stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| err(format!("{cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A private network namespace, deleted on drop (with every link in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace with a unique name and loopback up.
    pub fn new() -> Result<Netns> {
        Netns::create(&unique("psd"))
    }

    /// A new namespace called `name`.
    pub fn create(name: &str) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> <args>`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Many `ip` commands in one process (`ip -n <ns> -batch -`): a burst of
    /// link changes as fast as `ip` can issue them.
    pub fn batch(&self, commands: &[String]) -> Result<()> {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("ip -batch: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            for c in commands {
                writeln!(stdin, "{c}").map_err(|e| err(format!("ip -batch: {e}")))?;
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("ip -batch: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "ip -batch failed: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            )));
        }
        Ok(())
    }

    /// `ip -n <ns> <args>` that may fail.
    pub fn try_ip(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The peer name of port `name`.
    pub fn peer(name: &str) -> String {
        format!("p{}", name.trim_start_matches("Ethernet"))
    }

    /// Create port `name` as a veth whose peer is up, so the port's
    /// operational state follows its admin state.
    pub fn add_port(&self, name: &str) -> Result<()> {
        let peer = Netns::peer(name);
        self.ip(&["link", "add", name, "type", "veth", "peer", "name", &peer])?;
        self.ip(&["link", "set", &peer, "up"]).map(drop)
    }

    pub fn set_up(&self, name: &str) -> Result<()> {
        self.ip(&["link", "set", name, "up"]).map(drop)
    }

    pub fn set_down(&self, name: &str) -> Result<()> {
        self.ip(&["link", "set", name, "down"]).map(drop)
    }

    pub fn set_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        self.ip(&["link", "set", name, "mtu", &mtu.to_string()])
            .map(drop)
    }

    pub fn del_port(&self, name: &str) -> Result<()> {
        self.ip(&["link", "del", name]).map(drop)
    }

    /// The kernel's view of `name`: (admin up, oper up (RUNNING), mtu).
    pub fn link_state(&self, name: &str) -> Option<(bool, bool, u32)> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "dev", name])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = text.split('<').nth(1)?.split('>').next()?;
        let flags: Vec<&str> = flags.split(',').collect();
        let mtu = text
            .split(" mtu ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((
            flags.contains(&"UP"),
            flags.contains(&"LOWER_UP") && flags.contains(&"UP"),
            mtu,
        ))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Options for a test Redis.
#[derive(Clone)]
pub struct RedisOptions {
    /// `notify-keyspace-events` (SONiC runs with `AKE`); "" turns them off.
    pub notify: &'static str,
    /// Start it inside this namespace (for TCP tests).
    pub netns: Option<String>,
    /// Keep data across restarts (`SHUTDOWN SAVE` + reload from `dir`).
    pub persist: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            notify: "AKE",
            netns: None,
            persist: false,
        }
    }
}

/// A private redis-server with a unix socket and a TCP port.
pub struct RedisServer {
    pub dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    opts: RedisOptions,
}

fn free_port() -> Result<u16> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| err(format!("free port: {e}")))
}

impl RedisServer {
    pub fn start() -> Result<RedisServer> {
        RedisServer::start_with(RedisOptions::default())
    }

    pub fn start_with(opts: RedisOptions) -> Result<RedisServer> {
        let mut s = RedisServer {
            dir: TempDir::new()?,
            port: free_port()?,
            child: None,
            opts,
        };
        // The port was free when asked for, but it is an ephemeral one: an
        // outgoing connection of another test may take it before
        // redis-server binds it, and redis-server then exits at once. Ask
        // for another port then (a few times), rather than fail the test.
        let mut tries = 0;
        loop {
            match s.spawn() {
                Ok(()) => return Ok(s),
                Err(e) if tries >= 4 => return Err(e),
                Err(_) => {
                    tries += 1;
                    s.port = free_port()?;
                }
            }
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn address(&self) -> Address {
        Address::Unix(self.socket_path())
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = match &self.opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "redis-server"]);
                c
            }
            None => Command::new("redis-server"),
        };
        let save = if self.opts.persist { "3600 1" } else { "" };
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(self.socket_path())
            .args([
                "--unixsocketperm",
                "777",
                "--save",
                save,
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--notify-keyspace-events",
                self.opts.notify,
                "--daemonize",
                "no",
                "--loglevel",
                "notice",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| {
            err(format!(
                "starting redis-server: {e} (install it: apt-get install redis-server)"
            ))
        })?;
        // Wait for the server's own "ready" line: an event, not a guess.
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(err("redis-server: no stdout"));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        if rx.recv_timeout(WAIT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!(
                "redis-server did not become ready within {WAIT:?}"
            )));
        }
        self.child = Some(child);
        Ok(())
    }

    /// A client on database `db`.
    pub fn client(&self, db: u32) -> Result<Client> {
        Client::connect_db(&self.address(), db, WAIT)
            .map_err(|e| err(format!("connecting to redis: {e}")))
    }

    /// One command on database `db`; an error reply is an error.
    pub fn cmd(&self, db: u32, args: &[&str]) -> Result<syncd::engine::redis::client::Value> {
        let v = self
            .client(db)?
            .cmd(args)
            .map_err(|e| err(format!("{args:?}: {e}")))?;
        match v.error() {
            Some(e) => Err(err(format!("{args:?}: {e}"))),
            None => Ok(v),
        }
    }

    /// Stop the server (saving its data when persistent).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.opts.persist {
                if let Ok(mut c) = self.client(0) {
                    let _ = c.cmd(&["SHUTDOWN", "SAVE"]);
                }
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket_path());
    }

    /// Start it again on the same socket and port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// A `database_config.json` for this server. `unix`: list the unix
    /// socket (SONiC's default) or only TCP.
    pub fn write_database_config(&self, dir: &Path, unix: bool) -> Result<PathBuf> {
        let sock = if unix {
            self.socket_path().display().to_string()
        } else {
            "/nonexistent/redis.sock".into()
        };
        let text = format!(
            r#"{{"INSTANCES": {{"redis": {{"hostname": "127.0.0.1", "port": {port}, "unix_socket_path": "{sock}"}}}},
  "DATABASES": {{
    "APPL_DB": {{"id": 0, "separator": ":", "instance": "redis"}},
    "CONFIG_DB": {{"id": 4, "separator": "|", "instance": "redis"}},
    "STATE_DB": {{"id": 6, "separator": "|", "instance": "redis"}}
  }}, "VERSION": "1.0"}}"#,
            port = self.port
        );
        let path = dir.join("database_config.json");
        std::fs::write(&path, text).map_err(|e| err(format!("writing {}: {e}", path.display())))?;
        Ok(path)
    }

    /// HGETALL as sorted (field, value) pairs.
    pub fn hgetall(&self, db: u32, key: &str) -> Result<Vec<(String, String)>> {
        let mut pairs = self.cmd(db, &["HGETALL", key])?.pairs();
        pairs.sort();
        Ok(pairs)
    }

    /// KEYS, sorted.
    pub fn keys(&self, db: u32, pattern: &str) -> Result<Vec<String>> {
        let mut k: Vec<String> = self
            .cmd(db, &["KEYS", pattern])?
            .items()
            .iter()
            .filter_map(|v| v.as_string())
            .collect();
        k.sort();
        Ok(k)
    }

    /// Write CONFIG_DB `PORT|<name>` for each port, SONiC style.
    pub fn configure_ports(&self, names: &[&str]) -> Result<()> {
        let mut c = self.client(4)?;
        for (i, name) in names.iter().enumerate() {
            let lanes = format!("{},{},{},{}", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4);
            let alias = format!("etp{}", i + 1);
            let index = i.to_string();
            let key = format!("PORT|{name}");
            let r = c
                .cmd(&[
                    "HSET",
                    &key,
                    "lanes",
                    &lanes,
                    "alias",
                    &alias,
                    "index",
                    &index,
                    "speed",
                    "100000",
                    "mtu",
                    "9100",
                    "admin_status",
                    "up",
                    "fec",
                    "rs",
                ])
                .map_err(|e| err(format!("HSET {key}: {e}")))?;
            if let Some(e) = r.error() {
                return Err(err(format!("HSET {key}: {e}")));
            }
        }
        Ok(())
    }

    /// Orchagent's part, as SONiC's ConsumerStateTable pops it: move every
    /// `_PORT_TABLE:<k>` in `PORT_TABLE_KEY_SET` to `PORT_TABLE:<k>`.
    /// Returns the keys moved.
    pub fn orchagent_pop(&self) -> Result<Vec<String>> {
        const POP: &str = r#"
local keys = redis.call('SPOP', KEYS[1], 8192)
for _, k in ipairs(keys) do
    local fv = redis.call('HGETALL', '_PORT_TABLE:' .. k)
    for i = 1, #fv, 2 do
        redis.call('HSET', 'PORT_TABLE:' .. k, fv[i], fv[i + 1])
    end
    redis.call('DEL', '_PORT_TABLE:' .. k)
end
return keys"#;
        let v = self.cmd(0, &["EVAL", POP, "1", "PORT_TABLE_KEY_SET"])?;
        let mut keys: Vec<String> = v.items().iter().filter_map(|k| k.as_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Orchagent's part for any ProducerStateTable `table`, as SONiC's
    /// ConsumerStateTable pops it: for each key in `<table>_KEY_SET`, a
    /// pending delete (`<table>_DEL_SET`) removes `<table>:<k>`, then the
    /// staged fields `_<table>:<k>` are set on it. Returns the keys popped.
    pub fn orchagent_pop_table(&self, table: &str) -> Result<Vec<String>> {
        const POP: &str = r#"
local t = ARGV[1]
local keys = redis.call('SPOP', t .. '_KEY_SET', 1000000)
for _, k in ipairs(keys) do
    if redis.call('SREM', t .. '_DEL_SET', k) == 1 then
        redis.call('DEL', t .. ':' .. k)
    end
    local fv = redis.call('HGETALL', '_' .. t .. ':' .. k)
    for i = 1, #fv, 2 do
        redis.call('HSET', t .. ':' .. k, fv[i], fv[i + 1])
    end
    redis.call('DEL', '_' .. t .. ':' .. k)
end
return keys"#;
        let v = self.cmd(0, &["EVAL", POP, "0", table])?;
        let mut keys: Vec<String> = v.items().iter().filter_map(|k| k.as_string()).collect();
        keys.sort();
        Ok(keys)
    }

    /// Put `PORT_TABLE:<name>` in APPL_DB directly (as if orchagent had it).
    pub fn add_to_port_table(&self, name: &str) -> Result<()> {
        self.cmd(
            0,
            &["HSET", &format!("PORT_TABLE:{name}"), "admin_status", "up"],
        )
        .map(drop)
    }

    /// Wait until `cond` holds, woken by keyspace notifications when they
    /// are on (an event each time something changes), else by a short poll.
    pub fn wait_until(
        &self,
        what: &str,
        mut cond: impl FnMut(&RedisServer) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut sub = if self.opts.notify.is_empty() {
            None
        } else {
            let mut s = Client::connect(&self.address(), WAIT)
                .map_err(|e| err(format!("subscribe: {e}")))?;
            s.cmd(&["PSUBSCRIBE", "__keyspace@*"])
                .map_err(|e| err(format!("subscribe: {e}")))?;
            Some(s)
        };
        loop {
            if cond(self)? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(err(format!("timed out after {WAIT:?} waiting for {what}")));
            }
            match &mut sub {
                Some(s) => {
                    // Any notification (or the deadline) wakes us to re-check.
                    let _ = s.read_until(deadline.min(now + Duration::from_millis(500)));
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Wait until STATE_DB `PORT_TABLE|<name>` holds exactly the four fields.
    pub fn wait_state(&self, name: &str, admin: &str, oper: &str, mtu: u32) -> Result<()> {
        let want = state_fields(admin, oper, mtu);
        self.wait_until(&format!("STATE_DB PORT_TABLE|{name} = {want:?}"), |r| {
            Ok(r.hgetall(6, &format!("PORT_TABLE|{name}"))? == want)
        })
    }

    /// Wait until STATE_DB `PORT_TABLE|<name>` is gone.
    pub fn wait_state_absent(&self, name: &str) -> Result<()> {
        self.wait_until(&format!("STATE_DB PORT_TABLE|{name} deleted"), |r| {
            Ok(r.hgetall(6, &format!("PORT_TABLE|{name}"))?.is_empty())
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The four STATE_DB fields, sorted like `hgetall` returns them.
pub fn state_fields(admin: &str, oper: &str, mtu: u32) -> Vec<(String, String)> {
    let mut v = vec![
        ("admin_status".to_string(), admin.to_string()),
        ("mtu".to_string(), mtu.to_string()),
        ("netdev_oper_status".to_string(), oper.to_string()),
        ("state".to_string(), "ok".to_string()),
    ];
    v.sort();
    v
}

/// The kernel's neighbor table limits (`gc_thresh1..3` of IPv4 and IPv6),
/// raised while held. They are global (the init namespace's, shared by
/// every namespace), so tests that make thousands of neighbors raise them
/// together: the first holder raises, the last one's drop restores what
/// was there. Without it the kernel refuses adds past 1024 neighbors
/// (`ENOBUFS`) and collects entries past 128.
pub struct NeighborLimits(());

static LIMITS: std::sync::Mutex<(usize, Vec<(PathBuf, String)>)> =
    std::sync::Mutex::new((0, Vec::new()));

impl NeighborLimits {
    /// Room for `n` neighbors per family, at least.
    pub fn raise(n: u64) -> Result<NeighborLimits> {
        let mut held = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        for family in ["ipv4", "ipv6"] {
            for t in ["gc_thresh1", "gc_thresh2", "gc_thresh3"] {
                let path = PathBuf::from(format!("/proc/sys/net/{family}/neigh/default/{t}"));
                let old = std::fs::read_to_string(&path)
                    .map_err(|e| err(format!("{}: {e}", path.display())))?;
                let current: u64 = old.trim().parse().unwrap_or(0);
                if held.0 == 0 {
                    held.1.push((path.clone(), old.trim().to_string()));
                }
                if current < n {
                    std::fs::write(&path, n.to_string())
                        .map_err(|e| err(format!("{}: {e}", path.display())))?;
                }
            }
        }
        held.0 += 1;
        Ok(NeighborLimits(()))
    }
}

impl Drop for NeighborLimits {
    fn drop(&mut self) {
        let mut held = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        held.0 -= 1;
        if held.0 == 0 {
            for (path, old) in held.1.drain(..) {
                let _ = std::fs::write(&path, old);
            }
        }
    }
}
