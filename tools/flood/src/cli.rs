//! The `flood` command line: subcommands, flags, and the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use syncd::engine::runtime::config::Sched;

/// What flood measures, for `flood --help`.
pub const INTRO: &str = "\
flood — real-kernel link-change generator and end-to-end meter for portsyncd

Drives real kernel link changes (acked RTM_NEWLINK requests: admin up/down
and MTU) and measures, for each change, the time from the kernel's ack to
the moment Redis reports the STATE_DB write that shows it (keyspace
notifications). The same is measured in the same run for a built-in floor:
a minimal reference writer (its own process, on the same Redis, database
--floor-db) in a twin network namespace with the same ports, so neither
writer ever sees the other's events. In latency mode it is blocking: one
netlink read, one synchronous HSET of the same four fields, next. In
burst and rate modes it batches: each wake-up reads everything queued and
sends one pipelined write of each port's latest state (floor.kind in the
JSON says which ran). Daemon and floor phases alternate
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
    flood init [OPTIONS]      start-up: last netdev appearing → PortInitDone
    flood neigh MODE ...      neighsyncd: initial N | latency | burst BASE NEW
    flood SUBCOMMAND --help   that subcommand's options
    flood --version

";
/// The modes of `run` and `attach`.
pub const MODES_HELP: &str = "\
MODES (--mode, comma-separated, run in order, e.g. latency,burst):
    latency   one change at a time: send, ack, wait until STATE_DB shows it
              and the port has settled (oper status included), pause
              --gap-us, next
    burst     changes sent back to back as fast as the kernel acks them
    rate      --rate changes/s for --duration seconds; the daemon's RSS
              is sampled every second (start, after 10 s of warm-up, end,
              max)
    overflow  daemon only (the floor has no resync): SIGSTOP the daemon,
              send a burst (wait until the kernel's oper states have
              settled), check that the kernel dropped messages on the
              daemon's socket, SIGCONT, and time how long STATE_DB takes to
              match the kernel again for every port. Use a small buffer,
              e.g. --daemon-set netlink.rcvbuf_bytes=65536; a round with no
              kernel drop is reported as such
  Changes go round-robin over the ports; on each port they alternate an
  MTU change (a new value each time, 1501..9100) and an admin toggle, so
  every state a port passes through is distinct and each STATE_DB write
  can be matched to the change it shows. A change is complete at the first
  write of its port whose admin_status and mtu show it or a later change
  (admin-up: the UP,!RUNNING write, not the RUNNING one ~0.5 ms later);
  changes overtaken before they were written count as coalesced.

";
/// Options of `run` and `attach`.
pub const COMMON_HELP: &str = "\
COMMON OPTIONS:
    --mode M[,M...]       latency | burst | rate | overflow (default
                          latency)
    --count N[,N...]      changes per writer (daemon, and floor) for
                          latency, burst and overflow: one value for all, or
                          one per such mode in --mode order (rate mode has
                          no count); split over the rounds
                          (default latency 2000, burst 10000,
                          overflow 20000)
    --rate R              changes/s in rate mode (default 1000)
    --duration S          seconds per writer in rate mode (default 10)
    --rounds K            daemon and floor phases per mode, alternating
                          (default latency 5, burst 1, rate 2,
                          overflow 5)
    --gap-us US           pause after each settled change in latency mode
                          (default 200)
    --no-floor            skip the floor (no ratios)
    --show-state          at the end, print what landed in STATE_DB for
                          every port next to the kernel's state
    --floor-db N          database the floor writes, on STATE_DB's Redis
                          (default 15)
    --floor-cpu N         pin the floor process to CPU N (to match
                          --daemon-set runtime.cpu=N)
    --floor-sched P       the floor's policy: other | fifo:PRIO | rr:PRIO
                          (to match --daemon-set runtime.sched=P)
    --floor busy          the floor busy-polls (zero-timeout polls, no
                          sleep) in its phases, and the daemon is stopped
                          (SIGSTOP) meanwhile, so the two never spin at
                          once: the reference for runtime.busy_poll = true
                          (pin both alike: --floor-cpu N with
                          --daemon-set runtime.cpu=N)
    --syscalls            count each writer's system calls per phase with
                          perf stat -e raw_syscalls:sys_enter -p PID (both
                          writers; adds a little cost to every syscall)
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

";
/// Options of `run` alone.
pub const RUN_HELP: &str = "\
RUN OPTIONS:
    --ports N             ports Ethernet0, Ethernet4, ... (default 32)
    --daemon PATH         daemon under test (default: portsyncd next to
                          this flood binary)
    --daemon-set K=V      pass --set K=V to the daemon; repeatable
                          (e.g. runtime.cpu=1)
    --daemon-log FILE     keep the daemon's log there

";
/// Options of `init`.
pub const INIT_HELP: &str = "\
INIT OPTIONS (flood init; also --ports (default 256), --daemon,
--daemon-set, --daemon-log, --settle-timeout, --json, --progress):
    --runs K              fresh start-ups measured (default 5)
    --create-gap-us US    pause between creating two ports (default 0:
                          back to back)
  Each run: a private redis-server with CONFIG_DB PORT for every port, the
  daemon, orchagent's step, then flood creates the netdevs itself (per
  port one acked RTM_NEWLINK creating the veth, one setting its peer up).
  A thread of flood with its own
  netlink socket in the namespace stamps each port's first RTM_NEWLINK as
  it reads it, and PortInitDone when the keyspace notification of
  APPL_DB _PORT_TABLE:PortInitDone reaches it. Reported per run and as the
  median: last port seen → PortInitDone, and the
  request creating the last port sent → PortInitDone (an upper bound).

";
/// Options of `attach` alone.
pub const ATTACH_HELP: &str = "\
ATTACH OPTIONS:
    --netns NAME          the daemon's network namespace (default: current)
    --redis ADDR          STATE_DB's Redis: unix:PATH, PATH.sock or HOST:PORT
                          (STATE_DB is database 6 then)
    --database-config F   or SONiC's database_config.json (default
                          /var/run/redis/sonic-db/database_config.json)
    --port-names A,B,...  ports to flap (or --ports N: Ethernet0...)
    --pid PID             the daemon's pid, for CPU and RSS figures (and
                          needed by overflow mode and --syscalls)
  attach restores each port's admin state and MTU at the end.

";
/// The JSON of `run` and `attach`.
pub const JSON_RUN_HELP: &str = "\
JSON (--json): top level holds latency_us and floor_latency_us
{p50,p90,p99,p999,max,mean,count} (from the latency mode when it ran, else
the first mode other than overflow), changes, kernel_events, redis_writes, wrong_final_states
(sums over modes), daemon_cpu_us_per_event (over every daemon phase),
daemon_rss_kb (largest), daemon_totals (the counters of the daemon's
\"totals:\" log line at exit, flood run only), and \"modes\" with every
figure per mode: rate and burst add daemon_rss {start_kb, warm_kb, end_kb,
max_kb, growth_kb, samples [[s, kB]...]}; overflow adds round_results (per
round: kernel_drops, recovery_ms (the smaller of last_write_ms and
verified_ms), last_write_ms, verified_ms, writes, late_writes, stopped_ms,
recovery_cpu_ms) and recovery_ms_median; --syscalls adds syscalls_per_event
for both writers.
Also time (when the run ended, RFC 3339, UTC), git_commit (git rev-parse
HEAD of the checkout flood was built in; null if none) and cpu_model
(/proc/cpuinfo).

";
/// The JSON of `init`.
pub const JSON_INIT_HELP: &str = "\
JSON (--json): flood init writes {ports, runs: [{last_seen_to_init_done_ms,
last_sent_to_init_done_ms, create_ms, ...}], median_ms, median_sent_ms}.


Like flood run's, it holds time (RFC 3339, UTC), git_commit (of the
checkout flood was built in; null if none) and cpu_model.
";
/// Exit statuses, in every help text.
pub const EXIT_HELP: &str = "\
EXIT STATUS:
    0 done, every final state right (init: every run saw PortInitDone);
    1 failure; 2 bad command line;
    3 done, but some port ended wrong in STATE_DB; 130 interrupted
";

/// The help text of `sub`, or of flood as a whole: only the options that
/// subcommand takes.
pub fn help_text(sub: Option<Sub>) -> String {
    let parts: &[&str] = match sub {
        None => &[INTRO, EXIT_HELP],
        Some(Sub::Run) => &[
            "flood run [OPTIONS]: a private redis-server, network namespaces with\n\
             the ports, the daemon and the floor, all started and removed by flood\n\n",
            MODES_HELP,
            COMMON_HELP,
            RUN_HELP,
            JSON_RUN_HELP,
            EXIT_HELP,
        ],
        Some(Sub::Attach) => &[
            "flood attach [OPTIONS]: an existing daemon and Redis (this flaps its\n\
             ports!)\n\n",
            MODES_HELP,
            COMMON_HELP,
            ATTACH_HELP,
            JSON_RUN_HELP,
            EXIT_HELP,
        ],
        Some(Sub::Init) => &[
            "flood init [OPTIONS]: start-up, from the last netdev appearing to\n\
             PortInitDone\n\n",
            INIT_HELP,
            JSON_INIT_HELP,
            EXIT_HELP,
        ],
    };
    parts.concat()
}

/// A measurement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Latency,
    Burst,
    Rate,
    Overflow,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Latency => "latency",
            Mode::Burst => "burst",
            Mode::Rate => "rate",
            Mode::Overflow => "overflow",
        }
    }

    fn parse(s: &str) -> Result<Mode, UsageError> {
        match s {
            "latency" => Ok(Mode::Latency),
            "burst" => Ok(Mode::Burst),
            "rate" => Ok(Mode::Rate),
            "overflow" => Ok(Mode::Overflow),
            other => Err(UsageError(format!(
                "--mode: unknown mode {other:?} (expected latency, burst, rate or overflow)"
            ))),
        }
    }

    fn default_count(self) -> u64 {
        match self {
            Mode::Latency => 2000,
            Mode::Burst => 10_000,
            Mode::Rate => 0,
            Mode::Overflow => 20_000,
        }
    }

    fn default_rounds(self) -> u32 {
        match self {
            Mode::Latency => 5,
            Mode::Burst => 1,
            Mode::Rate => 2,
            Mode::Overflow => 5,
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
    /// The floor busy-polls in its phases (`--floor busy`).
    pub floor_busy: bool,
}

/// The subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Run,
    Attach,
    Init,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Run => "run",
            Sub::Attach => "attach",
            Sub::Init => "init",
        }
    }
}

/// Everything `flood run` / `flood attach` / `flood init` was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub sub: Sub,
    pub modes: Vec<ModePlan>,
    pub rate: f64,
    pub duration: Duration,
    pub gap: Duration,
    pub floor: bool,
    pub floor_db: u32,
    /// Pin the floor process to this CPU.
    pub floor_cpu: Option<usize>,
    /// The floor process's scheduling policy.
    pub floor_sched: Option<Sched>,
    /// `--floor busy`: the floor spins (zero-timeout polls) during its own
    /// phases, and the daemon is stopped (SIGSTOP) meanwhile.
    pub floor_busy: bool,
    /// Count each writer's syscalls per phase (perf stat).
    pub syscalls: bool,
    /// `init`: start-ups measured.
    pub runs: u32,
    /// `init`: pause between creating two ports.
    pub create_gap: Duration,
    pub settle_timeout: Duration,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub raw: Option<PathBuf>,
    /// `Some(true)`: always; `Some(false)`: never; `None`: when stderr is a tty.
    pub progress: Option<bool>,
    /// Print the daemon's final STATE_DB port entries beside the kernel's.
    pub show_state: bool,
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
    /// `--help`, of flood (None) or of a subcommand.
    Help(Option<Sub>),
    /// `--version`.
    Version,
    Measure(Box<Options>),
    /// `flood neigh …`.
    Neigh(crate::neigh::cli::Parsed),
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

/// The whole command line, for the record.
fn with_program(argv: &[String]) -> Vec<String> {
    std::iter::once("flood".to_string())
        .chain(argv.iter().cloned())
        .collect()
}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let argv: Vec<String> = args.into_iter().collect();
    let mut it = argv.iter().cloned();
    let sub = match it.next().as_deref() {
        None => {
            return Err(UsageError(
                "missing subcommand: flood run, attach, init or neigh".into(),
            ))
        }
        Some("-h" | "--help" | "help") => return Ok(Command::Help(None)),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("run") => Sub::Run,
        Some("attach") => Sub::Attach,
        Some("init") => Sub::Init,
        Some("neigh") => {
            return crate::neigh::cli::parse(&argv[1..], with_program(&argv)).map(Command::Neigh)
        }
        Some(other) => {
            return Err(UsageError(format!(
                "unknown subcommand {other:?} (expected run, attach, init or neigh)"
            )))
        }
    };
    let attach = sub == Sub::Attach;
    let mut modes = vec![Mode::Latency];
    let mut counts: Option<Vec<u64>> = None;
    let mut rounds: Option<u32> = None;
    let mut o = Options {
        sub,
        modes: Vec::new(),
        rate: 1000.0,
        duration: Duration::from_secs(10),
        gap: Duration::from_micros(200),
        floor: true,
        floor_db: 15,
        floor_cpu: None,
        floor_sched: None,
        floor_busy: false,
        syscalls: false,
        runs: 5,
        create_gap: Duration::ZERO,
        settle_timeout: Duration::from_secs(30),
        json: None,
        plot: None,
        raw: None,
        progress: None,
        show_state: false,
        ports: Vec::new(),
        daemon: None,
        daemon_sets: Vec::new(),
        daemon_log: None,
        netns: None,
        redis: RedisSource::DatabaseConfig(PathBuf::from(SONIC_DATABASE_CONFIG)),
        pid: None,
        argv: with_program(&argv),
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
        // Run options that start a daemon are init options too.
        let run_only = |flag: &str| -> Result<(), UsageError> {
            if attach {
                Err(UsageError(format!(
                    "{flag} is an option of flood run, not attach"
                )))
            } else {
                Ok(())
            }
        };
        let init_only = |flag: &str| -> Result<(), UsageError> {
            if sub == Sub::Init {
                Ok(())
            } else {
                Err(UsageError(format!(
                    "{flag} is an option of flood init, not {}",
                    sub.name()
                )))
            }
        };
        const INIT_FLAGS: [&str; 11] = [
            "-h",
            "--help",
            "--ports",
            "--runs",
            "--create-gap-us",
            "--daemon",
            "--daemon-set",
            "--daemon-log",
            "--settle-timeout",
            "--json",
            "--progress",
        ];
        if sub == Sub::Init
            && flag.starts_with('-')
            && !INIT_FLAGS.contains(&flag.as_str())
            && flag != "--no-progress"
        {
            return Err(UsageError(format!("{flag} is not an option of flood init")));
        }
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
            "-h" | "--help" => return Ok(Command::Help(Some(sub))),
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
            "--floor-cpu" => o.floor_cpu = Some(number("--floor-cpu", &value()?)?),
            "--floor-sched" => {
                let v = value()?;
                o.floor_sched = Some(
                    Sched::try_from(v).map_err(|e| UsageError(format!("--floor-sched: {e}")))?,
                );
            }
            "--floor" => {
                let v = value()?;
                if v != "busy" {
                    return Err(UsageError(format!(
                        "--floor: {v:?}: the one kind to ask for is busy (the default floor blocks in latency mode and batches in burst and rate)"
                    )));
                }
                o.floor_busy = true;
            }
            "--syscalls" => o.syscalls = true,
            "--runs" => {
                init_only("--runs")?;
                let v = value()?;
                let k: u32 = number("--runs", &v)?;
                if k == 0 {
                    return Err(UsageError(format!("--runs: {v:?} must be at least 1")));
                }
                o.runs = k;
            }
            "--create-gap-us" => {
                init_only("--create-gap-us")?;
                o.create_gap = Duration::from_micros(number("--create-gap-us", &value()?)?);
            }
            "--settle-timeout" => {
                o.settle_timeout =
                    Duration::from_secs_f64(positive_f64("--settle-timeout", &value()?)?)
            }
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "--plot" => o.plot = Some(PathBuf::from(value()?)),
            "--raw" => o.raw = Some(PathBuf::from(value()?)),
            "--progress" => o.progress = Some(true),
            "--no-progress" => o.progress = Some(false),
            "--show-state" => o.show_state = true,
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
        (None, None) if sub == Sub::Init => port_names(256),
        (None, None) => port_names(32),
    };
    if sub == Sub::Init {
        // One fresh daemon per run; no changes, so no floor and no modes.
        o.floor = false;
        return Ok(Command::Measure(Box::new(o)));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = o.ports.iter().find(|p| !seen.insert(p.as_str())) {
        return Err(UsageError(format!("port {dup:?} is named twice")));
    }
    let counted = modes.iter().filter(|&&m| m != Mode::Rate).count();
    if let Some(list) = &counts {
        if list.len() != 1 && list.len() != counted {
            return Err(UsageError(format!(
                "--count has {} values for {counted} latency/burst/overflow modes: give one, or \
                 one per such mode (rate mode sends --rate changes/s for --duration seconds)",
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
            floor_busy: o.floor_busy,
        });
    }
    if attach && o.pid.is_none() && modes.contains(&Mode::Overflow) {
        return Err(UsageError(
            "overflow mode stops and resumes the daemon: flood attach needs its --pid".into(),
        ));
    }
    Ok(Command::Measure(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Options, UsageError> {
        match parse(s.split_whitespace().map(String::from))? {
            Command::Measure(o) => Ok(*o),
            Command::Help(_) | Command::Version | Command::Neigh(_) => panic!("help"),
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
        let e = parse_str("init --mode burst").unwrap_err().0;
        assert!(e.contains("--mode") && e.contains("init"), "{e}");
        let e = parse_str("run --runs 3").unwrap_err().0;
        assert!(e.contains("--runs"), "{e}");
        let e = parse_str("run --floor-sched fifo:0").unwrap_err().0;
        assert!(e.contains("--floor-sched"), "{e}");
        let e = parse_str("attach --ports 2 --mode overflow").unwrap_err().0;
        assert!(e.contains("--pid"), "{e}");
    }

    #[test]
    fn init_and_overflow_defaults() {
        let o = parse_str("init").unwrap();
        assert_eq!(o.sub, Sub::Init);
        assert_eq!((o.ports.len(), o.runs), (256, 5));
        assert!(!o.floor && o.modes.is_empty());
        let o = parse_str("init --ports 8 --runs 2 --create-gap-us 100").unwrap();
        assert_eq!((o.ports.len(), o.runs), (8, 2));
        assert_eq!(o.create_gap, Duration::from_micros(100));
        let o = parse_str("run --mode latency,overflow --count 10,300").unwrap();
        assert_eq!(o.modes[1].mode, Mode::Overflow);
        assert_eq!((o.modes[1].count, o.modes[1].rounds), (300, 5));
        let o = parse_str("run --floor-cpu 1 --floor-sched fifo:10 --syscalls").unwrap();
        assert_eq!(o.floor_cpu, Some(1));
        assert_eq!(o.floor_sched, Some(Sched::Fifo(10)));
        assert!(o.syscalls);
    }
}
