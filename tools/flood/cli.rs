//! The `flood` command line: subcommands, flags, and the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

/// The `--help` text.
pub const HELP: &str = "\
flood — real-kernel link-change generator and end-to-end meter for portsyncd

Drives real kernel link changes (acked RTM_NEWLINK requests: admin up/down
and MTU) and measures, for each change, the time from the kernel's ack to
the moment Redis reports the STATE_DB write that shows it (keyspace
notifications). The same is measured in the same run for a built-in floor:
a minimal reference writer (its own process: blocking netlink read, one
synchronous HSET of the same four fields on the same Redis, database
--floor-db) in a twin network namespace with the same ports, so neither
writer ever sees the other's events. Daemon and floor phases alternate
(ABBA order) so both see the same machine noise; figures are printed as
ratios to the floor. The ack's time is when the kernel has applied the
change (rtnetlink acks inside sendmsg); a write's time is when its
notification reaches flood.
After every phase the kernel's final state of every port is compared with
STATE_DB, and the daemon's CPU time per kernel event (all link messages in
its namespace, counted by flood's own netlink socket), wake-ups per event
and RSS are reported.

USAGE:
    flood run [OPTIONS]       private redis-server, namespace, ports, daemon
    flood attach [OPTIONS]    an existing setup (this flaps its ports!)
    flood --help

MODES (--mode, comma-separated, run in order, e.g. latency,burst):
    latency   one change at a time: send, ack, wait until STATE_DB shows it
              and the port has settled (oper status included), pause
              --gap-us, next
    burst     changes sent back to back as fast as the kernel acks them
    rate      --rate changes/s for --duration seconds
  Changes go round-robin over the ports; on each port they alternate an
  MTU change (a new value each time, 1501..9100) and an admin toggle, so
  every state a port passes through is distinct and each STATE_DB write
  can be matched to the change it shows. A change is complete at the first
  write of its port whose admin_status and mtu show it or a later change
  (admin-up: the UP,!RUNNING write, not the RUNNING one ~0.5 ms later);
  changes overtaken before they were written count as coalesced.

COMMON OPTIONS:
    --mode M[,M...]       latency | burst | rate (default latency)
    --count N[,N...]      changes per writer (daemon, and floor) for
                          latency and burst: one value for all, or one per
                          latency/burst mode in --mode order (rate mode has
                          no count); split over the rounds
                          (default latency 2000, burst 10000)
    --rate R              changes/s in rate mode (default 1000)
    --duration S          seconds per writer in rate mode (default 10)
    --rounds K            daemon and floor phases per mode, alternating
                          (default latency 5, burst 1, rate 2)
    --gap-us US           pause after each settled change in latency mode
                          (default 200)
    --no-floor            skip the floor (no ratios)
    --floor-db N          database the floor writes, on STATE_DB's Redis
                          (default 15)
    --settle-timeout S    how long a phase may take to reach the kernel's
                          final state in STATE_DB (default 30)
    --json FILE           write the results as JSON
    --plot FILE.svg       write the latency percentile distributions of
                          daemon and floor (log scales) as SVG
    --raw FILE.csv        write one line per change: mode, round, writer,
                          port, kind, state, ack and write times, latency
    --progress            progress on stderr even when it is not a tty
    --no-progress         no progress display
    -h, --help            print this help

RUN OPTIONS:
    --ports N             ports Ethernet0, Ethernet4, ... (default 32)
    --daemon PATH         daemon under test (default: portsyncd next to
                          this flood binary)
    --daemon-set K=V      pass --set K=V to the daemon; repeatable
                          (e.g. runtime.cpu=1)
    --daemon-log FILE     keep the daemon's log there

ATTACH OPTIONS:
    --netns NAME          the daemon's network namespace (default: current)
    --redis ADDR          STATE_DB's Redis: unix:PATH, PATH.sock or HOST:PORT
                          (STATE_DB is database 6 then)
    --database-config F   or SONiC's database_config.json (default
                          /var/run/redis/sonic-db/database_config.json)
    --port-names A,B,...  ports to flap (or --ports N: Ethernet0...)
    --pid PID             the daemon's pid, for CPU and RSS figures
  attach restores each port's admin state and MTU at the end.

JSON (--json): top level holds latency_us and floor_latency_us
{p50,p90,p99,p999,max,mean,count} (from the latency mode when it ran, else
the first mode), changes, kernel_events, redis_writes, wrong_final_states
(sums over modes), daemon_cpu_us_per_event (over every daemon phase),
daemon_rss_kb (largest), and \"modes\" with every figure per mode.

EXIT STATUS:
    0 done, every final state right; 1 failure; 2 bad command line;
    3 done, but some port ended wrong in STATE_DB; 130 interrupted
";

/// A measurement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Latency,
    Burst,
    Rate,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Latency => "latency",
            Mode::Burst => "burst",
            Mode::Rate => "rate",
        }
    }

    fn parse(s: &str) -> Result<Mode, UsageError> {
        match s {
            "latency" => Ok(Mode::Latency),
            "burst" => Ok(Mode::Burst),
            "rate" => Ok(Mode::Rate),
            other => Err(UsageError(format!(
                "--mode: unknown mode {other:?} (expected latency, burst or rate)"
            ))),
        }
    }

    fn default_count(self) -> u64 {
        match self {
            Mode::Latency => 2000,
            Mode::Burst => 10_000,
            Mode::Rate => 0,
        }
    }

    fn default_rounds(self) -> u32 {
        match self {
            Mode::Latency => 5,
            Mode::Burst => 1,
            Mode::Rate => 2,
        }
    }
}

/// A bad command line; the message names the flag and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the Redis holding STATE_DB is, in attach mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSource {
    /// An address given on the command line; STATE_DB is database 6.
    Address(String),
    /// SONiC's `database_config.json`.
    DatabaseConfig(PathBuf),
}

/// One mode as it will run.
#[derive(Debug, Clone, PartialEq)]
pub struct ModePlan {
    pub mode: Mode,
    /// Changes per writer over all rounds.
    pub count: u64,
    pub rounds: u32,
}

/// Everything `flood run` / `flood attach` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub attach: bool,
    pub modes: Vec<ModePlan>,
    pub rate: f64,
    pub duration: Duration,
    pub gap: Duration,
    pub floor: bool,
    pub floor_db: u32,
    pub settle_timeout: Duration,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub raw: Option<PathBuf>,
    /// `Some(true)`: always; `Some(false)`: never; `None`: when stderr is a tty.
    pub progress: Option<bool>,
    pub ports: Vec<String>,
    pub daemon: Option<PathBuf>,
    pub daemon_sets: Vec<String>,
    pub daemon_log: Option<PathBuf>,
    pub netns: Option<String>,
    pub redis: RedisSource,
    pub pid: Option<i32>,
    /// The command line, for the record.
    pub argv: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Measure(Box<Options>),
}

/// SONiC's default location of `database_config.json`.
pub const SONIC_DATABASE_CONFIG: &str = "/var/run/redis/sonic-db/database_config.json";

/// Most ports `run` creates: names stay below IFNAMSIZ and the veth count sane.
const MAX_PORTS: u64 = 1024;

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, UsageError> {
    v.parse()
        .map_err(|_| UsageError(format!("{flag}: {v:?} is not a valid number")))
}

fn positive_f64(flag: &str, v: &str) -> Result<f64, UsageError> {
    let x: f64 = number(flag, v)?;
    if !(x.is_finite() && x > 0.0) {
        return Err(UsageError(format!(
            "{flag}: {v:?} must be a positive number"
        )));
    }
    Ok(x)
}

/// The names of `n` switch ports: Ethernet0, Ethernet4, …
pub fn port_names(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("Ethernet{}", 4 * i)).collect()
}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let argv: Vec<String> = args.into_iter().collect();
    let mut it = argv.iter().cloned();
    let attach = match it.next().as_deref() {
        None => {
            return Err(UsageError(
                "missing subcommand: flood run or flood attach".into(),
            ))
        }
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("run") => false,
        Some("attach") => true,
        Some(other) => {
            return Err(UsageError(format!(
                "unknown subcommand {other:?} (expected run or attach)"
            )))
        }
    };
    let mut modes = vec![Mode::Latency];
    let mut counts: Option<Vec<u64>> = None;
    let mut rounds: Option<u32> = None;
    let mut o = Options {
        attach,
        modes: Vec::new(),
        rate: 1000.0,
        duration: Duration::from_secs(10),
        gap: Duration::from_micros(200),
        floor: true,
        floor_db: 15,
        settle_timeout: Duration::from_secs(30),
        json: None,
        plot: None,
        raw: None,
        progress: None,
        ports: Vec::new(),
        daemon: None,
        daemon_sets: Vec::new(),
        daemon_log: None,
        netns: None,
        redis: RedisSource::DatabaseConfig(PathBuf::from(SONIC_DATABASE_CONFIG)),
        pid: None,
        argv: std::iter::once("flood".to_string())
            .chain(argv.iter().cloned())
            .collect(),
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
        let run_only = |flag: &str| -> Result<(), UsageError> {
            if attach {
                Err(UsageError(format!(
                    "{flag} is an option of flood run, not attach"
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
                    "{flag} is an option of flood attach, not run"
                )))
            }
        };
        let mut value = || -> Result<String, UsageError> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => Err(UsageError(format!("{flag} needs a value"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--mode" => {
                let v = value()?;
                modes = v.split(',').map(Mode::parse).collect::<Result<_, _>>()?;
                if let Some(dup) = modes
                    .iter()
                    .enumerate()
                    .find(|(i, m)| modes[..*i].contains(m))
                {
                    return Err(UsageError(format!(
                        "--mode: {} is named twice in {v:?}",
                        dup.1.name()
                    )));
                }
            }
            "--count" => {
                let v = value()?;
                let list: Vec<u64> = v
                    .split(',')
                    .map(|c| number::<u64>("--count", c))
                    .collect::<Result<_, _>>()?;
                if list.contains(&0) {
                    return Err(UsageError(format!("--count: {v:?} must be at least 1")));
                }
                counts = Some(list);
            }
            "--rate" => o.rate = positive_f64("--rate", &value()?)?,
            "--duration" => {
                o.duration = Duration::from_secs_f64(positive_f64("--duration", &value()?)?)
            }
            "--rounds" => {
                let v = value()?;
                let k: u32 = number("--rounds", &v)?;
                if k == 0 {
                    return Err(UsageError(format!("--rounds: {v:?} must be at least 1")));
                }
                rounds = Some(k);
            }
            "--gap-us" => o.gap = Duration::from_micros(number("--gap-us", &value()?)?),
            "--no-floor" => o.floor = false,
            "--floor-db" => o.floor_db = number("--floor-db", &value()?)?,
            "--settle-timeout" => {
                o.settle_timeout =
                    Duration::from_secs_f64(positive_f64("--settle-timeout", &value()?)?)
            }
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--plot" => o.plot = Some(PathBuf::from(value()?)),
            "--raw" => o.raw = Some(PathBuf::from(value()?)),
            "--progress" => o.progress = Some(true),
            "--no-progress" => o.progress = Some(false),
            "--ports" => {
                let v = value()?;
                let n: u64 = number("--ports", &v)?;
                if n == 0 || n > MAX_PORTS {
                    return Err(UsageError(format!(
                        "--ports: {v:?} must be between 1 and {MAX_PORTS}"
                    )));
                }
                port_count = Some(n);
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
                if let Some(bad) = list.iter().find(|n| n.len() >= 16) {
                    return Err(UsageError(format!(
                        "--port-names: {bad:?} is longer than a netdev name can be"
                    )));
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
                "flood attach needs the ports: --port-names or --ports".into(),
            ))
        }
        (None, None) => port_names(32),
    };
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = o.ports.iter().find(|p| !seen.insert(p.as_str())) {
        return Err(UsageError(format!("port {dup:?} is named twice")));
    }
    let counted = modes.iter().filter(|&&m| m != Mode::Rate).count();
    if let Some(list) = &counts {
        if list.len() != 1 && list.len() != counted {
            return Err(UsageError(format!(
                "--count has {} values for {counted} latency/burst modes: give one, or one per \
                 latency/burst mode (rate mode sends --rate changes/s for --duration seconds)",
                list.len(),
            )));
        }
    }
    let mut next_count = 0;
    for &mode in &modes {
        let count = match (&counts, mode) {
            (_, Mode::Rate) => {
                let n = (o.rate * o.duration.as_secs_f64()).round();
                if n < 1.0 {
                    return Err(UsageError(format!(
                        "--rate {} for --duration {} makes no change",
                        o.rate,
                        o.duration.as_secs_f64()
                    )));
                }
                n as u64
            }
            (Some(list), _) if list.len() == 1 => list[0],
            (Some(list), _) => {
                next_count += 1;
                list[next_count - 1]
            }
            (None, m) => m.default_count(),
        };
        let rounds = rounds.unwrap_or(mode.default_rounds());
        if count < u64::from(rounds) {
            return Err(UsageError(format!(
                "{} mode: {count} changes cannot be split over {rounds} rounds",
                mode.name()
            )));
        }
        o.modes.push(ModePlan {
            mode,
            count,
            rounds,
        });
    }
    Ok(Command::Measure(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Options, UsageError> {
        match parse(s.split_whitespace().map(String::from))? {
            Command::Measure(o) => Ok(*o),
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults_and_lists() {
        let o = parse_str("run").unwrap();
        assert_eq!(o.ports.len(), 32);
        assert_eq!(o.ports[1], "Ethernet4");
        assert_eq!(o.modes.len(), 1);
        assert_eq!(o.modes[0].count, 2000);
        let o = parse_str("run --mode latency,burst --count 500,50000 --ports=4").unwrap();
        assert_eq!(o.modes[1].mode, Mode::Burst);
        assert_eq!(o.modes[1].count, 50_000);
        assert_eq!(o.ports.len(), 4);
        let o = parse_str("run --mode rate --rate 200 --duration 2").unwrap();
        assert_eq!(o.modes[0].count, 400);
        let o =
            parse_str("run --mode latency,rate,burst --count 5,7 --rate 10 --duration 1").unwrap();
        assert_eq!(
            o.modes.iter().map(|m| m.count).collect::<Vec<_>>(),
            vec![5, 10, 7]
        );
    }

    #[test]
    fn errors_name_the_input() {
        let e = parse_str("run --ports x").unwrap_err().0;
        assert!(e.contains("--ports") && e.contains("\"x\""), "{e}");
        let e = parse_str("run --mode fast").unwrap_err().0;
        assert!(e.contains("fast"), "{e}");
        let e = parse_str("run --pid 3").unwrap_err().0;
        assert!(e.contains("--pid"), "{e}");
        let e = parse_str("attach").unwrap_err().0;
        assert!(e.contains("--port-names"), "{e}");
        let e = parse_str("run --count 1,2").unwrap_err().0;
        assert!(e.contains("--count"), "{e}");
        let e = parse_str("run --mode burst --rounds 3 --count 2")
            .unwrap_err()
            .0;
        assert!(e.contains("rounds"), "{e}");
        assert!(parse_str("jump").is_err());
    }
}
