//! `flood neigh …`: the neighsyncd modes' command line and `--help`.

use std::path::PathBuf;
use std::time::Duration;

use syncd::engine::runtime::config::Sched;

use crate::cli::{port_names, RedisSource, UsageError, SONIC_DATABASE_CONFIG};
use crate::neigh::plan::MAX_NEIGHBORS;

/// `flood neigh --help`.
const INTRO: &str = "\
flood neigh — real-kernel neighbor changes against neighsyncd

Makes real kernel neighbors (nud permanent, IPv4, or IPv4 and IPv6 with
--ipv6; addresses 198.18.0.0/15 and 2001:2::/48) spread over veth ports
Ethernet0, Ethernet4, ... in a network namespace, and measures how the
daemon writes them to APPL_DB NEIGH_TABLE (ProducerStateTable: key set
NEIGH_TABLE_KEY_SET, staging hashes _NEIGH_TABLE:<ifname>:<ip> with neigh
and family). orchagent's pop is not emulated: entries are compared where
the daemon leaves them, in the staging hashes. Every mode ends comparing
APPL_DB with `ip -j neigh show` (0 wrong: every neighbor of flood's in the
kernel is in APPL_DB with its MAC and family, and no other one of flood's
is). The kernel's neighbor limits (gc_thresh1/2/3, IPv4 and IPv6) are
raised for the run and put back after.

USAGE:
    flood neigh initial N [OPTIONS]         start-up sync of N neighbors
    flood neigh latency [OPTIONS]           one change at a time, with floor
    flood neigh burst BASE NEW [OPTIONS]    BASE synced, then BASE+NEW changes
    flood neigh attach latency|burst ...    an existing neighsyncd and Redis
    flood neigh MODE --help                 that mode's options

";
const INITIAL: &str = "\
flood neigh initial N [OPTIONS]: N neighbors are added with one `ip -batch`
before the daemon starts; measured: the daemon's spawn → all N keys in
NEIGH_TABLE_KEY_SET (flood counts the set's sadd keyspace notifications,
then confirms with SCARD; the set script adds a key and writes its
staging hash atomically), the daemon's CPU time (schedstat
of every thread, from exec) and RSS (VmRSS, VmHWM) at that moment, then
the 0-wrong check.

";
const LATENCY: &str = "\
flood neigh latency [OPTIONS]: --neighbors neighbors are loaded and
synced; then --count changes, one at a time: flood replaces one neighbor's
MAC (an acked RTM_NEWNEIGH, NLM_F_REPLACE, as `ip neigh replace`) and
waits until the staging hash shows it (keyspace notification, then HGET
neigh), pauses --gap-us, next. Latency: flood's own RTNLGRP_NEIGH socket
reads the kernel's message (woken by the same multicast as the writer)
→ the notification of the write that shows it. Also ack_latency_us, from
the request's ack (as flood's port latency mode; later than the read:
the kernel queues the message before it acks). The floor, measured in
the same run (ABBA rounds):
flood's own minimal writer (a process: blocking netlink read, one PST
EVALSHA of the same key and fields per message, blocking reply) in a twin
namespace with the same ports and neighbors, writing database --floor-db.

";
const BURST: &str = "\
flood neigh burst BASE NEW [OPTIONS]: BASE neighbors are loaded and
synced (spawn → synced is reported), then one unthrottled `ip -batch` of
BASE+NEW `neigh replace` (every BASE neighbor gets a new MAC, NEW new
neighbors are added, interleaved). Measured from the batch's start:
settle_ms, when APPL_DB first held every neighbor with its final MAC
(each write's notification is read back; then checked against `ip -j
neigh show`), or the --settle-timeout deadline; the daemon's CPU time to
then per kernel event (events counted by flood's own RTNLGRP_NEIGH socket;
CPU from /proc/PID/task/*/schedstat); messages the kernel dropped on the
daemon's sockets; RSS; then the 0-wrong check. Then the batching floor,
in the same run and after the daemon (never at once: they would share
the CPUs): flood's own writer (a process in a twin namespace with the same
ports, writing database --floor-db) that on each wake-up reads every
datagram queued (recvmmsg), keeps each neighbor's latest state and sends
one pipelined batch of the same PST scripts; the same BASE (loaded before
it starts) and the same batch; its settle_ms, CPU per event and drops
(`floor` in the JSON, kind \"batching\"; no resync: after drops it may be
wrong, and says so).

";
const COMMON: &str = "\
OPTIONS:
    --ports N             ports Ethernet0, Ethernet4, ... (default 4)
    --ipv6                every other neighbor IPv6 (default: IPv4 only)
    --settle-timeout S    how long APPL_DB may take to match the kernel
                          (default 30)
    --json FILE           write the results as JSON
    --progress, --no-progress
    -h, --help            print this help
RUN OPTIONS (not attach):
    --daemon PATH         neighsyncd under test (default: neighsyncd next
                          to this flood binary); SONiC's C++ one through
                          its adaptor: CPP=DIR --daemon .../adaptor.sh
    --daemon-set K=V      pass --set K=V to the daemon; repeatable
    --daemon-log FILE     keep the daemon's log there
";
const LATENCY_OPTIONS: &str = "\
LATENCY OPTIONS:
    --neighbors K         neighbors loaded; changes go round them (1024)
    --count N             changes per writer, split over the rounds (2000)
    --rounds K            daemon and floor phases, alternating (5)
    --gap-us US           pause after each change (default 200)
";
const FLOOR_OPTIONS: &str = "\
FLOOR OPTIONS (latency, burst):
    --no-floor            skip the floor (no ratios)
    --floor-db N          the floor's database (default 15)
    --floor-cpu N         pin the floor process to CPU N
    --floor-sched P       the floor's policy: other | fifo:PRIO | rr:PRIO
";
const ATTACH: &str = "\
ATTACH (flood neigh attach latency|burst ...): an existing neighsyncd in
--netns, writing APPL_DB on --redis (database 0) or as --database-config
says; flood adds its neighbors on the existing --port-names (or --ports N:
Ethernet0...) and deletes them at the end.
    --netns NAME          the daemon's network namespace (default: current)
    --redis ADDR          unix:PATH, PATH.sock or HOST:PORT
    --database-config F   or SONiC's database_config.json (default
                          /var/run/redis/sonic-db/database_config.json)
    --port-names A,B,...  ports (up) to put the neighbors on
    --pid PID             the daemon's pid, for CPU, RSS and drops
";
const JSON: &str = "\
JSON (--json): mode, neighbors/base/new, wrong_entries and verify
{kernel, appl, missing, wrong_mac, wrong_family, extra, samples};
initial: spawn_to_all_ms, spawn_to_first_ms, daemon_cpu_ms,
daemon_cpu_us_per_neighbor; latency: latency_us, floor_latency_us,
ack_latency_us, floor_ack_latency_us {p50,p90,p99,p999,max,mean,count},
ratio_to_floor, daemon_cpu_us_per_event, floor{...}; burst: settle_ms, last_write_ms,
kernel_events, daemon_cpu_us_per_event, kernel_drops, initial_sync_ms;
daemon_rss_kb, daemon_rss_peak_kb (VmHWM), daemon_totals (the daemon's
totals: line at exit, run only), time, git_commit, cpu_model.
EXIT STATUS:
    0 done, 0 wrong entries; 1 failure; 2 bad command line;
    3 done, some entries wrong; 130 interrupted
";

/// The neighbor mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighMode {
    Initial { neighbors: u64 },
    Latency,
    Burst { base: u64, new: u64 },
}

impl NeighMode {
    pub fn name(self) -> &'static str {
        match self {
            NeighMode::Initial { .. } => "initial",
            NeighMode::Latency => "latency",
            NeighMode::Burst { .. } => "burst",
        }
    }
}

/// Everything `flood neigh …` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighOptions {
    pub mode: NeighMode,
    pub attach: bool,
    pub ports: Vec<String>,
    pub ipv6: bool,
    /// Latency: neighbors loaded, which the changes go round.
    pub neighbors: u64,
    pub count: u64,
    pub rounds: u32,
    pub gap: Duration,
    pub floor: bool,
    pub floor_db: u32,
    pub floor_cpu: Option<usize>,
    pub floor_sched: Option<Sched>,
    pub settle_timeout: Duration,
    pub json: Option<PathBuf>,
    pub progress: Option<bool>,
    pub daemon: Option<PathBuf>,
    pub daemon_sets: Vec<String>,
    pub daemon_log: Option<PathBuf>,
    pub netns: Option<String>,
    pub redis: RedisSource,
    pub pid: Option<i32>,
    pub argv: Vec<String>,
}

impl NeighOptions {
    /// Neighbors the run makes in the daemon's namespace.
    pub fn total_neighbors(&self) -> u64 {
        match self.mode {
            NeighMode::Initial { neighbors } => neighbors,
            NeighMode::Latency => self.neighbors,
            NeighMode::Burst { base, new } => base + new,
        }
    }
}

/// What `flood neigh …` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Help(String),
    Measure(Box<NeighOptions>),
}

/// The help of `mode` (None: of `flood neigh`).
pub fn help_text(mode: Option<&str>, attach: bool) -> String {
    let parts: &[&str] = match mode {
        Some("initial") => &[INITIAL, COMMON, JSON],
        Some("latency") if attach => &[
            LATENCY,
            COMMON,
            LATENCY_OPTIONS,
            FLOOR_OPTIONS,
            ATTACH,
            JSON,
        ],
        Some("latency") => &[LATENCY, COMMON, LATENCY_OPTIONS, FLOOR_OPTIONS, JSON],
        Some("burst") if attach => &[BURST, COMMON, FLOOR_OPTIONS, ATTACH, JSON],
        Some("burst") => &[BURST, COMMON, FLOOR_OPTIONS, JSON],
        _ if attach => &[INTRO, ATTACH],
        _ => &[INTRO, JSON],
    };
    parts.concat()
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, UsageError> {
    v.parse()
        .map_err(|_| UsageError(format!("{flag}: {v:?} is not a valid number")))
}

fn count(flag: &str, v: Option<String>) -> Result<u64, UsageError> {
    let Some(v) = v else {
        return Err(UsageError(format!("{flag} is missing")));
    };
    let n: u64 = number(flag, &v)?;
    if n == 0 || n > MAX_NEIGHBORS {
        return Err(UsageError(format!(
            "{flag}: {v:?} must be between 1 and {MAX_NEIGHBORS}"
        )));
    }
    Ok(n)
}

/// Parse what follows `flood neigh`; `argv` is the whole command line.
pub fn parse(args: &[String], argv: Vec<String>) -> Result<Parsed, UsageError> {
    let mut it = args.iter().cloned().peekable();
    let mut attach = false;
    if it.peek().map(String::as_str) == Some("attach") {
        attach = true;
        it.next();
    }
    let mode_name = match it.next() {
        None => {
            return Err(UsageError(
                "flood neigh needs a mode: initial N, latency or burst BASE NEW".into(),
            ))
        }
        Some(h) if matches!(h.as_str(), "-h" | "--help" | "help") => {
            return Ok(Parsed::Help(help_text(None, attach)))
        }
        Some(m) => m,
    };
    if !matches!(mode_name.as_str(), "initial" | "latency" | "burst") {
        return Err(UsageError(format!(
            "unknown neighbor mode {mode_name:?} (expected initial, latency or burst)"
        )));
    }
    let rest: Vec<String> = it.collect();
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Parsed::Help(help_text(Some(&mode_name), attach)));
    }
    if attach && mode_name == "initial" {
        return Err(UsageError(
            "initial mode starts the daemon itself: it has no attach form (use --daemon)".into(),
        ));
    }
    let mut positional = rest.iter().take_while(|a| !a.starts_with('-')).cloned();
    let mode = match mode_name.as_str() {
        "initial" => NeighMode::Initial {
            neighbors: count("initial N", positional.next())?,
        },
        "burst" => NeighMode::Burst {
            base: count("burst BASE", positional.next())?,
            new: count("burst NEW", positional.next())?,
        },
        _ => NeighMode::Latency,
    };
    if let Some(extra) = positional.next() {
        return Err(UsageError(format!("unexpected argument {extra:?}")));
    }
    let mut it = rest.iter().skip_while(|a| !a.starts_with('-')).cloned();
    let mut o = NeighOptions {
        mode,
        attach,
        ports: Vec::new(),
        ipv6: false,
        neighbors: 1024,
        count: 2000,
        rounds: 5,
        gap: Duration::from_micros(200),
        floor: matches!(mode, NeighMode::Latency | NeighMode::Burst { .. }),
        floor_db: 15,
        floor_cpu: None,
        floor_sched: None,
        settle_timeout: Duration::from_secs(30),
        json: None,
        progress: None,
        daemon: None,
        daemon_sets: Vec::new(),
        daemon_log: None,
        netns: None,
        redis: RedisSource::DatabaseConfig(PathBuf::from(SONIC_DATABASE_CONFIG)),
        pid: None,
        argv,
    };
    let mut port_count: Option<u64> = None;
    let mut port_list: Option<Vec<String>> = None;
    let mut redis_addr: Option<String> = None;
    let mut dbconfig: Option<PathBuf> = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, UsageError> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => Err(UsageError(format!("{flag} needs a value"))),
            }
        };
        let floor_only = |flag: &str| -> Result<(), UsageError> {
            if matches!(mode, NeighMode::Latency | NeighMode::Burst { .. }) {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "{flag} is an option of flood neigh latency and burst, not {}",
                    mode.name()
                )))
            }
        };
        let latency_only = |flag: &str| -> Result<(), UsageError> {
            if mode == NeighMode::Latency {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "{flag} is an option of flood neigh latency, not {}",
                    mode.name()
                )))
            }
        };
        let run_only = |flag: &str| -> Result<(), UsageError> {
            if attach {
                Err(UsageError(format!(
                    "{flag} starts a daemon: not an option of flood neigh attach"
                )))
            } else {
                Ok(())
            }
        };
        let attach_only = |flag: &str| -> Result<(), UsageError> {
            if attach {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "{flag} is an option of flood neigh attach"
                )))
            }
        };
        match flag.as_str() {
            "--ports" => {
                let v = value()?;
                let n: u64 = number("--ports", &v)?;
                if n == 0 || n > 256 {
                    return Err(UsageError(format!(
                        "--ports: {v:?} must be between 1 and 256"
                    )));
                }
                port_count = Some(n);
            }
            "--ipv6" => o.ipv6 = true,
            "--settle-timeout" => {
                let v = value()?;
                let s: f64 = number("--settle-timeout", &v)?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(UsageError(format!(
                        "--settle-timeout: {v:?} must be a positive number"
                    )));
                }
                o.settle_timeout = Duration::from_secs_f64(s);
            }
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--progress" => o.progress = Some(true),
            "--no-progress" => o.progress = Some(false),
            "--neighbors" => {
                latency_only("--neighbors")?;
                o.neighbors = count("--neighbors", Some(value()?))?;
            }
            "--count" => {
                latency_only("--count")?;
                let v = value()?;
                o.count = number("--count", &v)?;
                if o.count == 0 {
                    return Err(UsageError(format!("--count: {v:?} must be at least 1")));
                }
            }
            "--rounds" => {
                latency_only("--rounds")?;
                let v = value()?;
                o.rounds = number("--rounds", &v)?;
                if o.rounds == 0 {
                    return Err(UsageError(format!("--rounds: {v:?} must be at least 1")));
                }
            }
            "--gap-us" => {
                latency_only("--gap-us")?;
                o.gap = Duration::from_micros(number("--gap-us", &value()?)?);
            }
            "--no-floor" => {
                floor_only("--no-floor")?;
                o.floor = false;
            }
            "--floor-db" => {
                floor_only("--floor-db")?;
                o.floor_db = number("--floor-db", &value()?)?;
            }
            "--floor-cpu" => {
                floor_only("--floor-cpu")?;
                o.floor_cpu = Some(number("--floor-cpu", &value()?)?);
            }
            "--floor-sched" => {
                floor_only("--floor-sched")?;
                let v = value()?;
                o.floor_sched = Some(
                    Sched::try_from(v).map_err(|e| UsageError(format!("--floor-sched: {e}")))?,
                );
            }
            "--daemon" => {
                run_only("--daemon")?;
                o.daemon = Some(PathBuf::from(value()?));
            }
            "--daemon-set" => {
                run_only("--daemon-set")?;
                let v = value()?;
                if !v.contains('=') {
                    return Err(UsageError(format!(
                        "--daemon-set: {v:?} is not SECTION.KEY=VALUE"
                    )));
                }
                o.daemon_sets.push(v);
            }
            "--daemon-log" => {
                run_only("--daemon-log")?;
                o.daemon_log = Some(PathBuf::from(value()?));
            }
            "--netns" => {
                attach_only("--netns")?;
                o.netns = Some(value()?);
            }
            "--redis" => {
                attach_only("--redis")?;
                redis_addr = Some(value()?);
            }
            "--database-config" => {
                attach_only("--database-config")?;
                dbconfig = Some(PathBuf::from(value()?));
            }
            "--port-names" => {
                attach_only("--port-names")?;
                let v = value()?;
                let list: Vec<String> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if list.is_empty() {
                    return Err(UsageError(format!("--port-names: {v:?} names no port")));
                }
                port_list = Some(list);
            }
            "--pid" => {
                attach_only("--pid")?;
                let v = value()?;
                let pid: i32 = number("--pid", &v)?;
                if pid <= 0 {
                    return Err(UsageError(format!("--pid: {v:?} is not a process id")));
                }
                o.pid = Some(pid);
            }
            other if other.starts_with('-') => {
                return Err(UsageError(format!("unknown option {other:?}")))
            }
            other => return Err(UsageError(format!("unexpected argument {other:?}"))),
        }
    }
    if redis_addr.is_some() && dbconfig.is_some() {
        return Err(UsageError(
            "--redis and --database-config name the same thing; give one".into(),
        ));
    }
    if let Some(a) = redis_addr {
        o.redis = RedisSource::Address(a);
    } else if let Some(p) = dbconfig {
        o.redis = RedisSource::DatabaseConfig(p);
    }
    o.ports = match (port_list, port_count) {
        (Some(_), Some(_)) => {
            return Err(UsageError(
                "--ports and --port-names both choose the ports; give one".into(),
            ))
        }
        (Some(list), None) => list,
        (None, Some(n)) => port_names(n),
        (None, None) if attach => {
            return Err(UsageError(
                "flood neigh attach needs the ports: --port-names or --ports".into(),
            ))
        }
        (None, None) => port_names(4),
    };
    if o.total_neighbors() > MAX_NEIGHBORS {
        return Err(UsageError(format!(
            "{} neighbors in all: at most {MAX_NEIGHBORS} (the 198.18.0.0/15 range)",
            o.total_neighbors()
        )));
    }
    if mode == NeighMode::Latency && o.count < u64::from(o.rounds) {
        return Err(UsageError(format!(
            "{} changes cannot be split over {} rounds",
            o.count, o.rounds
        )));
    }
    Ok(Parsed::Measure(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<NeighOptions, UsageError> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&args, args.clone())? {
            Parsed::Measure(o) => Ok(*o),
            Parsed::Help(h) => panic!("help: {h}"),
        }
    }

    #[test]
    fn modes_and_their_counts() {
        let o = parse_str("initial 65536").unwrap();
        assert_eq!(o.mode, NeighMode::Initial { neighbors: 65_536 });
        assert_eq!(o.ports.len(), 4);
        assert!(!o.floor);
        let o = parse_str("burst 10000 20000 --ipv6 --ports 2").unwrap();
        assert_eq!(
            o.mode,
            NeighMode::Burst {
                base: 10_000,
                new: 20_000
            }
        );
        assert!(o.ipv6);
        assert_eq!(o.total_neighbors(), 30_000);
        let o = parse_str("latency --count 20 --rounds 2 --neighbors 8 --gap-us 0").unwrap();
        assert_eq!((o.count, o.rounds, o.neighbors), (20, 2, 8));
        assert!(o.floor);
        let o = parse_str(
            "attach burst 5 5 --netns cpp-nb --redis unix:/r.sock --pid 7 --port-names Ethernet0",
        )
        .unwrap();
        assert!(o.attach);
        assert_eq!(o.ports, ["Ethernet0"]);
        assert_eq!(o.redis, RedisSource::Address("unix:/r.sock".into()));
    }

    #[test]
    fn errors_name_the_input() {
        let e = |s: &str| parse_str(s).unwrap_err().0;
        assert!(e("initial").contains("initial N"));
        assert!(e("initial x").contains("\"x\""));
        assert!(e("burst 5").contains("NEW"));
        assert!(e("initial 200000").contains("131072"));
        assert!(e("burst 100000 100000").contains("200000"));
        assert!(e("attach initial 5").contains("attach"));
        assert!(e("attach latency").contains("--port-names"));
        assert!(e("initial 5 --count 3").contains("latency"));
        assert!(e("latency --pid 3").contains("attach"));
        assert!(e("attach latency --ports 1 --daemon x").contains("--daemon"));
        assert!(e("swim").contains("swim"));
        assert!(e("latency 5").contains("\"5\""));
    }

    #[test]
    fn each_mode_helps_with_its_own_options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let help = |s: &str| match parse(&args(s), args(s)).unwrap() {
            Parsed::Help(h) => h,
            Parsed::Measure(_) => panic!("{s}: no help"),
        };
        assert!(help("--help").contains("flood neigh burst BASE NEW"));
        let initial = help("initial --help");
        assert!(initial.contains("spawn") && !initial.contains("--floor-db"));
        let latency = help("latency -h");
        assert!(latency.contains("--floor-db") && !latency.contains("--netns"));
        assert!(help("attach burst --help").contains("--netns"));
    }
}
