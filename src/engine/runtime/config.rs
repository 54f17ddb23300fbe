//! Configuration: defaults < TOML file < `PORTSYNCD_<SECTION>_<KEY>`
//! environment variables < `--set section.key=value` flags.
//!
//! Every error names the key, the value and where it came from; the binary
//! exits 2 on any of them before it touches anything.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::runtime::log::{self, Level, Output};
use crate::log_warn;

/// SONiC's location of `database_config.json`.
pub const DEFAULT_DATABASE_CONFIG: &str = "/var/run/redis/sonic-db/database_config.json";

/// SONiC's location of `database_global.json` (swss-common's
/// `SonicDBConfig::DEFAULT_SONIC_DB_GLOBAL_CONFIG_FILE`), read only with a
/// namespace.
pub const DEFAULT_DATABASE_GLOBAL_CONFIG: &str = "/var/run/redis/sonic-db/database_global.json";

/// What differs between the daemons' configurations: where the file is,
/// the environment's prefix, the metrics port.
#[derive(Debug)]
pub struct DaemonConfig {
    pub name: &'static str,
    /// Where the daemon looks when `--config` is not given.
    pub default_path: &'static str,
    /// Prefix of the environment variables that set keys.
    pub env_prefix: &'static str,
    /// The metrics endpoint's default port (127.0.0.1).
    pub metrics_port: u16,
    /// `redis.write_buffer_bytes` by default: neighsyncd's writes are
    /// ~200 bytes each, so 1 MiB holds ~5,000 per `send` (plenty to keep
    /// Redis busy) and keeps its memory small at 64k neighbors.
    pub write_buffer_bytes: usize,
    /// `netlink.ring_bytes` by default: neighsyncd's 2 MiB is 16 slots of
    /// 128 KiB per `recvmmsg` (its events are one small datagram each; a
    /// dump's datagrams are at most 32 KiB), half portsyncd's, for memory.
    pub ring_bytes: usize,
    /// `runtime.coalesce_us` by default. neighsyncd's 1 ms: neighbor churn
    /// comes in bursts of thousands (a link down fails every neighbor on
    /// it) where CPU per event matters more than the last millisecond;
    /// with 200 µs a 20,000-replace burst cost ~4 µs of CPU per event, with
    /// 1 ms every turn ~2.7 µs, settling no later (PERF.md §4.11).
    pub coalesce_us: u64,
    /// Whether every turn of a burst sleeps `coalesce_us` (neighsyncd), or
    /// one turn in four (portsyncd: when every turn slept, its burst p99
    /// doubled, 3 → 6-7 ms, for 25 % less CPU per event).
    pub coalesce_every_turn: bool,
}

pub static PORTSYNCD: DaemonConfig = DaemonConfig {
    name: "portsyncd",
    default_path: "/etc/sonic/portsyncd.conf",
    env_prefix: "PORTSYNCD_",
    metrics_port: 29101,
    write_buffer_bytes: 4 << 20,
    ring_bytes: 4 << 20,
    coalesce_us: 200,
    coalesce_every_turn: false,
};

pub static NEIGHSYNCD: DaemonConfig = DaemonConfig {
    name: "neighsyncd",
    default_path: "/etc/sonic/neighsyncd.conf",
    env_prefix: "NEIGHSYNCD_",
    metrics_port: 29102,
    write_buffer_bytes: 1 << 20,
    ring_bytes: 2 << 20,
    coalesce_us: 1000,
    coalesce_every_turn: true,
};

static DAEMON: std::sync::OnceLock<&'static DaemonConfig> = std::sync::OnceLock::new();

/// Say which daemon this process is, once, before any configuration is
/// built (portsyncd when never said).
pub fn set_daemon(d: &'static DaemonConfig) {
    let _ = DAEMON.set(d);
}

/// The daemon this process is.
pub fn daemon() -> &'static DaemonConfig {
    DAEMON.get().copied().unwrap_or(&PORTSYNCD)
}

/// Where the daemon looks when `--config` is not given.
pub fn default_config_path() -> &'static str {
    daemon().default_path
}

/// A configuration error; the text is the message shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Path of SONiC's `database_config.json`: the databases when
    /// `runtime.namespace` is empty.
    pub database_config: PathBuf,
    /// Path of SONiC's `database_global.json`: where a non-empty
    /// `runtime.namespace` finds its `database_config.json`.
    pub database_global_config: PathBuf,
    /// Bound on bytes queued for one Redis connection; beyond it dirty
    /// ports wait in the port table.
    pub write_buffer_bytes: usize,
    /// First reconnect delay; doubles on each failure up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// How long a start-up request may take before the connection is
    /// considered dead and retried.
    pub timeout_ms: u64,
    /// How often a netdev not (yet) in APPL_DB `PORT_TABLE` is asked again,
    /// for Redis servers without keyspace notifications.
    pub port_table_poll_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            database_config: PathBuf::from(DEFAULT_DATABASE_CONFIG),
            database_global_config: PathBuf::from(DEFAULT_DATABASE_GLOBAL_CONFIG),
            write_buffer_bytes: daemon().write_buffer_bytes,
            retry_min_ms: 50,
            retry_max_ms: 2000,
            timeout_ms: 5000,
            port_table_poll_ms: 250,
        }
    }
}

/// `[netlink]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetlinkConfig {
    /// Receive buffer of the netlink socket (`SO_RCVBUFFORCE`).
    pub rcvbuf_bytes: usize,
    /// Size of the mlocked receive ring.
    pub ring_bytes: usize,
    /// Most datagrams read in one loop turn before the turn's batch is
    /// written; the rest is read in the next turn.
    pub max_batch_datagrams: usize,
}

impl Default for NetlinkConfig {
    fn default() -> Self {
        NetlinkConfig {
            rcvbuf_bytes: 16 << 20,
            ring_bytes: daemon().ring_bytes,
            max_batch_datagrams: 1024,
        }
    }
}

/// The event loop backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactorKind {
    Epoll,
    IoUring,
    /// io_uring when the kernel allows it, else epoll.
    Auto,
}

impl fmt::Display for ReactorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReactorKind::Epoll => "epoll",
            ReactorKind::IoUring => "io_uring",
            ReactorKind::Auto => "auto",
        })
    }
}

/// Scheduling policy of the loop thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Sched {
    Other,
    Fifo(u8),
    RoundRobin(u8),
}

impl TryFrom<String> for Sched {
    type Error = String;
    fn try_from(s: String) -> Result<Sched, String> {
        let bad = || {
            format!("expected \"other\", \"fifo:PRIO\" or \"rr:PRIO\" with PRIO 1-99, got {s:?}")
        };
        if s == "other" {
            return Ok(Sched::Other);
        }
        let (policy, prio) = s.split_once(':').ok_or_else(bad)?;
        let prio: u8 = prio.parse().map_err(|_| bad())?;
        if !(1..=99).contains(&prio) {
            return Err(bad());
        }
        match policy {
            "fifo" => Ok(Sched::Fifo(prio)),
            "rr" => Ok(Sched::RoundRobin(prio)),
            _ => Err(bad()),
        }
    }
}

impl From<Sched> for String {
    fn from(s: Sched) -> String {
        match s {
            Sched::Other => "other".into(),
            Sched::Fifo(p) => format!("fifo:{p}"),
            Sched::RoundRobin(p) => format!("rr:{p}"),
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// A network namespace (`asic0`) to run in, from the host of a
    /// multi-ASIC switch: entered (`/var/run/netns/<name>`) before any
    /// socket is opened, its databases found through
    /// `redis.database_global_config`. Empty (the default): stay where
    /// started, databases from `redis.database_config`, as SONiC's own
    /// daemons inside an ASIC's container.
    pub namespace: String,
    pub reactor: ReactorKind,
    /// Pin the loop thread to this CPU.
    pub cpu: Option<usize>,
    /// Unset: keep what the process inherited (systemd's
    /// `CPUSchedulingPolicy=`, `chrt`).
    pub sched: Option<Sched>,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)`.
    pub mlock_all: bool,
    /// Exit 2 when a placement request (cpu, sched, mlock) is refused,
    /// instead of warning and going on.
    pub strict: bool,
    /// Spin on the reactor instead of sleeping. Off by default: a spinning
    /// real-time thread starves the kernel's link-watch worker on its core.
    pub busy_poll: bool,
    /// Under a burst (three netlink turns in a row, each closer than 200 µs
    /// or this, whichever is shorter, to the one before), sleep this long
    /// before the next turn so it takes a bigger batch: fewer wake-ups per
    /// event, at most this much added latency while the burst lasts
    /// (portsyncd: one turn in four sleeps; neighsyncd: every turn, see
    /// [`DaemonConfig::coalesce_every_turn`]). 0 turns it off.
    pub coalesce_us: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            namespace: String::new(),
            reactor: ReactorKind::Epoll,
            cpu: None,
            sched: None,
            mlock_all: false,
            strict: false,
            busy_poll: false,
            coalesce_us: daemon().coalesce_us,
        }
    }
}

/// An optional listen address; the empty string disables the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Listen(pub Option<SocketAddr>);

impl TryFrom<String> for Listen {
    type Error = String;
    fn try_from(s: String) -> Result<Listen, String> {
        if s.is_empty() {
            return Ok(Listen(None));
        }
        s.parse::<SocketAddr>()
            .map(|a| Listen(Some(a)))
            .map_err(|_| {
                format!("expected IP:PORT (e.g. \"127.0.0.1:29101\") or \"\" to disable, got {s:?}")
            })
    }
}

impl From<Listen> for String {
    fn from(l: Listen) -> String {
        l.0.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus endpoint; `""` disables it.
    pub listen: Listen,
    /// Pin the metrics thread to this CPU.
    pub cpu: Option<usize>,
    /// Seconds between summary log lines; 0 disables them.
    pub log_interval_s: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            // Not 9101: Prometheus' port allocation list gives it to the
            // HAProxy exporter, and its 9100-9999 range is used up (2023),
            // where the Prometheus docs advise other applications to stay
            // out of it. Below Linux's ephemeral range (32768-60999), so
            // an outgoing connection's local port never holds it.
            // portsyncd 29101, neighsyncd 29102.
            listen: Listen(Some(SocketAddr::from((
                [127, 0, 0, 1],
                daemon().metrics_port,
            )))),
            cpu: None,
            log_interval_s: 60,
        }
    }
}

/// A log level, written as in SONiC (`notice`, `info`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(pub Level);

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<LogLevel, String> {
        Level::parse(&s)
            .map(LogLevel)
            .ok_or_else(|| format!("expected error, warn, notice, info or debug, got {s:?}"))
    }
}

impl From<LogLevel> for String {
    fn from(l: LogLevel) -> String {
        l.0.name().to_ascii_lowercase()
    }
}

/// Where log lines go (`[log] output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOutput {
    /// journald's stderr protocol under systemd, else syslog when
    /// `/dev/log` exists, else stderr.
    Auto,
    Syslog,
    Stderr,
}

impl LogOutput {
    /// The output this choice means on this machine now.
    pub fn resolve(self) -> Output {
        match self {
            LogOutput::Auto => Output::auto(
                log::under_journal(),
                Path::new(crate::engine::runtime::syslog::DEV_LOG).exists(),
            ),
            LogOutput::Syslog => Output::Syslog,
            LogOutput::Stderr => Output::Stderr,
        }
    }
}

impl fmt::Display for LogOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogOutput::Auto => "auto",
            LogOutput::Syslog => "syslog",
            LogOutput::Stderr => "stderr",
        })
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub output: LogOutput,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel(Level::Notice),
            output: LogOutput::Auto,
        }
    }
}

/// `[verify]`: the daemon's periodic check of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    /// Seconds between self-verifications (a kernel dump and a read-back
    /// of what the daemon owns in Redis, any difference repaired); 0 turns
    /// them off. One also runs right after start-up.
    pub interval_s: u64,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig { interval_s: 60 }
    }
}

/// `[warm]`: warm restart (neighsyncd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmConfig {
    /// How long a warm start waits for STATE_DB `NEIGH_RESTORE_TABLE|Flags
    /// restored` before exiting 1 (SONiC: 180).
    pub restore_timeout_s: u64,
}

impl WarmConfig {
    /// Whether this process is not the daemon `[warm]` belongs to.
    fn not_this_daemons(&self) -> bool {
        daemon().name != NEIGHSYNCD.name
    }
}

impl Default for WarmConfig {
    fn default() -> Self {
        WarmConfig {
            restore_timeout_s: 180,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub redis: RedisConfig,
    pub netlink: NetlinkConfig,
    pub runtime: RuntimeConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub verify: VerifyConfig,
    /// neighsyncd only: left out of portsyncd's sections, and refused there.
    #[serde(skip_serializing_if = "WarmConfig::not_this_daemons")]
    pub warm: WarmConfig,
}

/// Where the configuration file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// The default path: a missing file means defaults.
    Default,
    /// Given with `--config`: it must exist.
    Given(PathBuf),
}

/// One `section.key = value` set from outside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub section: String,
    pub key: String,
    pub value: String,
    /// Names the origin in errors: `PORTSYNCD_NETLINK_RCVBUF_BYTES` or `--set`.
    pub origin: String,
}

impl Override {
    /// Parse a `--set section.key=value` argument.
    pub fn from_flag(arg: &str) -> Result<Override, ConfigError> {
        let (path, value) = arg
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("--set {arg:?}: expected SECTION.KEY=VALUE")))?;
        let (section, key) = path
            .split_once('.')
            .ok_or_else(|| ConfigError(format!("--set {arg:?}: expected SECTION.KEY=VALUE")))?;
        Ok(Override {
            section: section.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            origin: format!("--set {arg}"),
        })
    }

    /// A flag of its own for one key: `--namespace asic0` is
    /// `runtime.namespace = "asic0"`, from `--namespace asic0`.
    pub fn from_key_flag(flag: &str, section: &str, key: &str, value: &str) -> Override {
        Override {
            section: section.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            origin: format!("{flag} {value}"),
        }
    }

    /// Overrides from `PORTSYNCD_<SECTION>_<KEY>` variables; every other
    /// `PORTSYNCD_*` variable is named in a warning and ignored (see
    /// [`Override::split_env`]).
    pub fn from_env<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Vec<Override>, ConfigError> {
        let (out, ignored) = Override::split_env(vars);
        for name in ignored {
            log_warn!(
                "environment variable {name}: not {}<SECTION>_<KEY> of a section ({}); ignored",
                daemon().env_prefix,
                Config::sections().join(", ")
            );
        }
        Ok(out)
    }

    /// Split the environment: variables `PORTSYNCD_<SECTION>_<KEY>` of a
    /// known section become overrides (an unknown key or a bad value there
    /// is still an error, later, naming the variable), and the names of
    /// the other `PORTSYNCD_*` variables (`PORTSYNCD_BIN`, set for some
    /// other tool) are returned to be warned about: they are not ours to
    /// refuse. Section names hold no underscore, so the first `_` after
    /// the prefix splits them.
    pub fn split_env<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> (Vec<Override>, Vec<String>) {
        let sections = Config::sections();
        let mut out = Vec::new();
        let mut ignored = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(daemon().env_prefix) else {
                continue;
            };
            let split = rest
                .split_once('_')
                .map(|(s, k)| (s.to_ascii_lowercase(), k.to_ascii_lowercase()))
                .filter(|(s, _)| sections.contains(s));
            let Some((section, key)) = split else {
                ignored.push(name);
                continue;
            };
            out.push(Override {
                section,
                key,
                value,
                origin: format!("environment variable {name}"),
            });
        }
        // Deterministic order whatever the environment's.
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        ignored.sort();
        (out, ignored)
    }

    /// `table` with this key set to `value`, if the result is a valid
    /// configuration; deserialized at each override so that an error
    /// names its origin.
    fn apply(&self, table: &toml::Table, value: toml::Value) -> Result<toml::Table, ConfigError> {
        let mut table = table.clone();
        let section = table
            .entry(self.section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section) = section else {
            return Err(ConfigError(format!(
                "{}: [{}] is not a section",
                self.origin, self.section
            )));
        };
        section.insert(self.key.clone(), value);
        toml::Value::Table(table.clone())
            .try_into::<Config>()
            .map_err(|e| {
                let msg = e.to_string().replace('\n', " ");
                ConfigError(format!(
                    "{}: {}.{} = {:?}: {msg}",
                    self.origin, self.section, self.key, self.value
                ))
            })?;
        Ok(table)
    }

    /// The value as TOML: numbers and booleans as such, anything else as a
    /// string (so `PORTSYNCD_RUNTIME_REACTOR=epoll` needs no quotes).
    fn toml_value(&self) -> toml::Value {
        let doc = format!("v = {}", self.value);
        match doc.parse::<toml::Table>() {
            Ok(mut t) => match t.remove("v") {
                Some(
                    v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
                ) => v,
                Some(toml::Value::String(s)) => toml::Value::String(s),
                _ => toml::Value::String(self.value.clone()),
            },
            Err(_) => toml::Value::String(self.value.clone()),
        }
    }
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError(format!(
            "{key} = {value}: out of range, must be between {min} and {max}"
        )));
    }
    Ok(())
}

/// A namespace name must be one file of `/var/run/netns`, as `ip netns`
/// requires; `""` is none.
fn check_namespace(name: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError(format!("runtime.namespace = {name:?}: {why}")));
    if name == "." || name == ".." {
        return bad("not a namespace name");
    }
    if name.contains(['/', '\0']) {
        return bad("a namespace name has no '/' (nor NUL)");
    }
    if name.len() > 255 {
        return bad("longer than a file name may be (255 bytes)");
    }
    Ok(())
}

/// Where a configuration came from, kept so SIGHUP can load it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    pub file: ConfigFile,
    /// Environment first, then flags (later ones win).
    pub overrides: Vec<Override>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(&self.file, &self.overrides)
    }
}

/// Keys SIGHUP applies without a restart.
pub const RELOADABLE: [&str; 3] = ["log.level", "log.output", "metrics.log_interval_s"];

impl Config {
    /// `section.key` of every setting that differs between `self` and `other`.
    pub fn differences(&self, other: &Config) -> Vec<String> {
        fn flat(c: &Config) -> std::collections::BTreeMap<String, toml::Value> {
            let mut out = std::collections::BTreeMap::new();
            for (section, v) in toml::Table::try_from(c).unwrap_or_default() {
                if let toml::Value::Table(keys) = v {
                    for (key, v) in keys {
                        out.insert(format!("{section}.{key}"), v);
                    }
                }
            }
            out
        }
        let (a, b) = (flat(self), flat(other));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    /// Check ranges and relations the types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.redis;
        in_range(
            "redis.write_buffer_bytes",
            r.write_buffer_bytes,
            64 << 10,
            1 << 30,
        )?;
        in_range("redis.retry_min_ms", r.retry_min_ms, 1, 60_000)?;
        in_range("redis.retry_max_ms", r.retry_max_ms, 1, 600_000)?;
        if r.retry_max_ms < r.retry_min_ms {
            return Err(ConfigError(format!(
                "redis.retry_max_ms = {}: must not be below redis.retry_min_ms = {}",
                r.retry_max_ms, r.retry_min_ms
            )));
        }
        in_range("redis.timeout_ms", r.timeout_ms, 10, 600_000)?;
        in_range(
            "redis.port_table_poll_ms",
            r.port_table_poll_ms,
            10,
            3_600_000,
        )?;
        if r.database_config.as_os_str().is_empty() {
            return Err(ConfigError(
                "redis.database_config = \"\": a path is required".into(),
            ));
        }
        if r.database_global_config.as_os_str().is_empty() {
            return Err(ConfigError(
                "redis.database_global_config = \"\": a path is required".into(),
            ));
        }
        check_namespace(&self.runtime.namespace)?;
        let n = &self.netlink;
        in_range("netlink.rcvbuf_bytes", n.rcvbuf_bytes, 4096, 1 << 30)?;
        in_range(
            "netlink.ring_bytes",
            n.ring_bytes,
            crate::engine::netlink::ring::MIN_RING_BYTES,
            1 << 30,
        )?;
        in_range(
            "netlink.max_batch_datagrams",
            n.max_batch_datagrams,
            1,
            1 << 20,
        )?;
        in_range("runtime.coalesce_us", self.runtime.coalesce_us, 0, 100_000)?;
        let cpus = available_cpus();
        if let Some(cpu) = self.runtime.cpu {
            in_range("runtime.cpu", cpu, 0, cpus.saturating_sub(1))?;
        }
        if let Some(cpu) = self.metrics.cpu {
            in_range("metrics.cpu", cpu, 0, cpus.saturating_sub(1))?;
        }
        in_range(
            "metrics.log_interval_s",
            self.metrics.log_interval_s,
            0,
            86_400,
        )?;
        in_range("verify.interval_s", self.verify.interval_s, 0, 86_400)?;
        if self.warm.not_this_daemons() && self.warm != WarmConfig::default() {
            return Err(ConfigError(format!(
                "[warm] is neighsyncd's; {} has no such section",
                daemon().name
            )));
        }
        in_range(
            "warm.restore_timeout_s",
            self.warm.restore_timeout_s,
            1,
            86_400,
        )?;
        Ok(())
    }

    /// Load from `file`, then apply `overrides` in order, then validate.
    pub fn load(file: &ConfigFile, overrides: &[Override]) -> Result<Config, ConfigError> {
        let (path, text) = match file {
            ConfigFile::Default => match std::fs::read_to_string(default_config_path()) {
                Ok(text) => (Some(PathBuf::from(default_config_path())), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, String::new()),
                Err(e) => {
                    return Err(ConfigError(format!(
                        "cannot read {}: {e}",
                        default_config_path()
                    )))
                }
            },
            ConfigFile::Given(p) => match std::fs::read_to_string(p) {
                Ok(text) => (Some(p.clone()), text),
                Err(e) => return Err(ConfigError(format!("cannot read {}: {e}", p.display()))),
            },
        };
        Config::from_parts(path.as_deref(), &text, overrides)
    }

    /// Build from the file's text (named by `path` in errors) and overrides.
    pub fn from_parts(
        path: Option<&Path>,
        text: &str,
        overrides: &[Override],
    ) -> Result<Config, ConfigError> {
        let name = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults".into());
        // Deserializing from the text gives errors with line, column and key.
        toml::from_str::<Config>(text).map_err(|e| ConfigError(format!("{name}: {e}")))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        for o in overrides {
            let guessed = o.toml_value();
            let as_text = toml::Value::String(o.value.clone());
            table = match o.apply(&table, guessed.clone()) {
                Ok(t) => t,
                // `0` or `true` for a key that takes text (a namespace
                // named `0`): the text as given, when the key takes it.
                Err(e) if guessed != as_text => o.apply(&table, as_text).map_err(|_| e)?,
                Err(e) => return Err(e),
            };
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The section names (`redis`, `netlink`, …), read off the struct
    /// itself so a new section needs no second list.
    pub fn sections() -> Vec<String> {
        toml::Table::try_from(Config::default())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The configuration as TOML, as `--print-config` shows it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// CPUs this process may run on (for range checks of `cpu` keys).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(
            // available_parallelism honours the affinity mask; a pinned test
            // runner must still be able to name every online CPU.
            // SAFETY: sysconf has no memory-safety preconditions.
            unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        )
}

#[cfg(test)]
mod tests;
