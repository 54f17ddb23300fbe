//! The `portsyncd` binary: command line, configuration, start-up, loop.

use std::process::ExitCode;

use syncd::engine::metrics::export::MetricsThread;
use syncd::engine::metrics::Recorder;
use syncd::engine::netlink::ring::{RecvRing, RingLock};
use syncd::engine::reactor::Reactor;
use syncd::engine::runtime::config::{Config, ConfigSource, Override};
use syncd::engine::runtime::log;
use syncd::engine::runtime::notify::Notifier;
use syncd::engine::runtime::placement::{self, Refused};
use syncd::engine::runtime::signals::Signals;
use syncd::engine::sonic::dbconfig::Databases;
use syncd::port::cli::{self, Command};
use syncd::port::daemon::{Daemon, Exit};
use syncd::port::follow::LinkSync;
use syncd::port::startup::{Started, Startup};
use syncd::port::table::PortTable;
use syncd::{log_error, log_notice, log_warn};

/// Exit statuses (see `--help`).
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    ExitCode::from(try_main())
}

/// A refused placement: a warning, or exit 2 under `strict`.
fn placement_result(strict: bool, r: Result<(), Refused>) -> Result<(), u8> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if strict => {
            log_error!("{e} (runtime.strict = true)");
            Err(EXIT_USAGE)
        }
        Err(e) => {
            log_warn!("{e}; continuing without it");
            Ok(())
        }
    }
}

fn try_main() -> u8 {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portsyncd: {e}");
            return EXIT_USAGE;
        }
    };
    let (file, sets, print_config) = match cmd {
        Command::Help => {
            print!("{}", cli::HELP);
            return 0;
        }
        Command::Version => {
            println!("portsyncd {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Command::SysctlCheck { file } => {
            return syncd::engine::runtime::sysctl_check::run(file.as_deref());
        }
        Command::Run {
            config,
            sets,
            print_config,
        } => (config, sets, print_config),
    };
    // Flags come after the environment: they win.
    let mut overrides = match Override::from_env(std::env::vars()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("portsyncd: {e}");
            return EXIT_USAGE;
        }
    };
    overrides.extend(sets);
    let cfg = match Config::load(&file, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portsyncd: {e}");
            return EXIT_USAGE;
        }
    };
    if print_config {
        print!("{}", cfg.to_toml());
        return 0;
    }
    log::init(cfg.log.level.0);
    let dbs = match Databases::load(&cfg.redis.database_config) {
        Ok(d) => d,
        Err(e) => {
            log_error!("{e} (redis.database_config)");
            return EXIT_USAGE;
        }
    };
    let source = ConfigSource { file, overrides };
    match run(cfg, dbs, source) {
        Ok(code) => code,
        Err(code) => code,
    }
}

fn run(cfg: Config, dbs: Databases, source: ConfigSource) -> Result<u8, u8> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        log_error!("{what}: {e}");
        EXIT_FAILURE
    };
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals = Signals::install().map_err(|e| fail("signals", &e))?;
    let notifier = Notifier::from_env();
    let strict = cfg.runtime.strict;

    if cfg.runtime.mlock_all {
        placement_result(strict, placement::lock_all_memory())?;
    }
    let ring = RecvRing::new(cfg.netlink.ring_bytes).map_err(|e| fail("receive ring", &e))?;
    if let RingLock::Refused(errno) = ring.lock() {
        placement_result(
            strict,
            Err(placement::ring_lock_refused(errno, ring.capacity())),
        )?;
    }

    let (recorder, samples) = Recorder::new();
    // The metrics thread first: it must not inherit the loop's pinning and
    // real-time policy.
    let mut metrics = MetricsThread::spawn(&cfg.metrics, recorder.counters.clone(), samples)
        .map_err(|e| fail("metrics thread", &e))?;
    // A refused metrics.listen bind or metrics.cpu pin: like a placement.
    for refused in metrics.take_refused() {
        placement_result(strict, Err(refused))?;
    }
    if let Some(cpu) = cfg.runtime.cpu {
        placement_result(strict, placement::pin_current_thread("runtime.cpu", cpu))?;
    }
    if let Some(sched) = cfg.runtime.sched {
        placement_result(strict, placement::set_scheduler(sched))?;
    }

    let reactor = Reactor::build(cfg.runtime.reactor).map_err(|e| fail("reactor", &e))?;
    log_notice!(
        "portsyncd {} starting; reactor {}",
        env!("CARGO_PKG_VERSION"),
        reactor.name()
    );

    let mut sync = LinkSync::new(PortTable::with_capacity(256), recorder.counters.clone());
    let started = Startup {
        cfg: &cfg,
        dbs: &dbs,
        signals: &signals,
        notifier: &notifier,
        sync: &mut sync,
    }
    .run(ring)
    .map_err(|e| fail("start-up", &e))?;
    let (info, reader, dump_seq) = match started {
        Started::Ready {
            info,
            reader,
            dump_seq,
        } => (info, reader, dump_seq),
        Started::Stopped(sig) => {
            log_notice!("signal {sig} during start-up: exiting");
            notifier.stopping();
            metrics.stop();
            return Ok(0);
        }
    };
    recorder
        .counters
        .rcvbuf_bytes
        .set(info.rcvbuf.effective as u64);
    log_notice!(
        "ready in {:.1} ms: {} start, {} configured ports, {} old interfaces, {} ports known",
        info.elapsed.as_secs_f64() * 1e3,
        if info.warm { "warm" } else { "cold" },
        info.configured_ports,
        info.old_interfaces,
        sync.ports.len()
    );
    let mut daemon = Daemon::new(
        cfg, &dbs, reactor, signals, notifier, recorder, reader, sync, dump_seq,
    )
    .map_err(|e| fail("event loop", &e))?;
    daemon.set_reload(source, metrics.control());
    daemon.announce_ready(format!(
        "running: {} configured ports, {} start",
        info.configured_ports,
        if info.warm { "warm" } else { "cold" }
    ));
    let exit = daemon.run().map_err(|e| fail("event loop", &e))?;
    metrics.stop();
    match exit {
        Exit::Stopped(sig) => {
            log_notice!("stopped by signal {sig}");
            Ok(0)
        }
    }
}
