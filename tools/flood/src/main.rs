//! flood: real-kernel link-change generator and end-to-end meter for
//! portsyncd, and (`flood neigh`, [`neigh`]) neighbor-change generator and
//! meter for neighsyncd. See `flood --help` and PERF.md.
//!
//! Threads: the main thread drives the changes ([`drive`]); the watcher
//! ([`watch`]) counts kernel events and matches each STATE_DB write to the
//! change it shows; the floor ([`floor`]) is the reference writer; a
//! signal thread ([`signal`]) turns Ctrl-C into an orderly teardown.
//! [`setup`] builds (and on drop tears down) what is measured.

mod cli;
mod drive;
mod floor;
mod init;
mod kernel;
mod neigh;
mod perf;
mod plan;
mod plot;
mod procfs;
mod progress;
mod provenance;
mod report;
mod setup;
mod signal;
mod watch;

use std::path::Path;
use std::process::ExitCode;

use cli::{Command, Options};
use drive::Driver;
use report::{ModeResult, RunInfo};
use setup::Bench;
use watch::{Side, SideConfig, Watcher};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_WRONG_STATES: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

/// Why flood stopped early.
#[derive(Debug)]
pub enum Error {
    /// A bad input, found before or while setting up (exit 2).
    Usage(String),
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// Anything else; the message names what failed.
    Failed(String),
}

impl Error {
    pub fn failed(what: impl Into<String>) -> Error {
        Error::Failed(what.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
            Error::Interrupted => f.write_str("interrupted"),
        }
    }
}

fn main() -> ExitCode {
    ExitCode::from(try_main())
}

fn try_main() -> u8 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__floor") => return floor::main(&args[1..]),
        Some("__neigh-floor") => return neigh::floor::main(&args[1..], false),
        Some("__neigh-floor-batching") => return neigh::floor::main(&args[1..], true),
        _ => {}
    }
    let opts = match cli::parse(args) {
        Ok(Command::Help(sub)) => {
            print!("{}", cli::help_text(sub));
            return 0;
        }
        Ok(Command::Version) => {
            println!("flood {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Ok(Command::Measure(o)) => o,
        Ok(Command::Neigh(neigh::cli::Parsed::Help(text))) => {
            print!("{text}");
            return 0;
        }
        Ok(Command::Neigh(neigh::cli::Parsed::Measure(o))) => {
            return exit_status(
                neigh::measure(&o),
                "neighbor(s) ended with a wrong APPL_DB entry",
            )
        }
        Err(e) => {
            eprintln!("flood: {e}\nflood: see flood --help");
            return EXIT_USAGE;
        }
    };
    let result = match opts.sub {
        cli::Sub::Init => init::measure(&opts),
        _ => measure(&opts),
    };
    exit_status(result, "port(s) ended with a wrong STATE_DB entry")
}

/// The exit status of a run that found `wrong` things wrong (`what`).
fn exit_status(result: Result<u64, Error>, what: &str) -> u8 {
    match result {
        Ok(0) => 0,
        Ok(wrong) => {
            eprintln!("flood: {wrong} {what}");
            EXIT_WRONG_STATES
        }
        Err(Error::Usage(m)) => {
            eprintln!("flood: {m}");
            EXIT_USAGE
        }
        Err(Error::Interrupted) => {
            eprintln!("flood: interrupted; everything it started is cleaned up");
            EXIT_INTERRUPTED
        }
        Err(Error::Failed(m)) => {
            eprintln!("flood: {m}");
            EXIT_FAILURE
        }
    }
}

/// Output files must be writable before anything is set up.
fn check_output(flag: &str, path: Option<&Path>) -> Result<(), Error> {
    let Some(path) = path else { return Ok(()) };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: is a directory",
            path.display()
        )));
    }
    Ok(())
}

/// Write an output file and say where it went: the report on stdout ends
/// with the files that hold the rest.
fn write_file(flag: &str, path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text)
        .map_err(|e| Error::failed(format!("{flag} {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Stops the threads when the run ends early, before the bench is torn down.
struct StopOnDrop(signal::Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// The whole run; the number of wrong final states of the daemon.
/// `--show-state`: the daemon's STATE_DB port entries and the kernel's links.
fn final_state(bench: &Bench) -> Result<String, Error> {
    let mut redis = syncd::engine::redis::client::Client::connect_db(
        &bench.address,
        bench.state_db,
        std::time::Duration::from_secs(5),
    )
    .map_err(|e| Error::failed(format!("reading STATE_DB: {e}")))?;
    let sep = bench.separator as char;
    let mut state = std::collections::HashMap::new();
    for p in &bench.ports {
        let v = redis
            .cmd(&["HGETALL", &format!("PORT_TABLE{sep}{p}")])
            .map_err(|e| Error::failed(format!("reading STATE_DB: {e}")))?;
        state.insert(p.clone(), v.pairs());
    }
    let kernel = kernel::Requests::open(bench.dut_netns.as_deref())?.dump()?;
    Ok(report::state_table(&bench.ports, &state, &kernel))
}

fn measure(o: &Options) -> Result<u64, Error> {
    check_output("--json", o.json.as_deref())?;
    check_output("--plot", o.plot.as_deref())?;
    check_output("--raw", o.raw.as_deref())?;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::failed(
            "flood needs root: it creates network namespaces and changes links",
        ));
    }
    // First, before any thread exists: every thread inherits the mask.
    let stop = signal::install().map_err(|e| Error::failed(format!("signal handling: {e}")))?;
    let mut bench = if o.sub == cli::Sub::Attach {
        Bench::attach(o)?
    } else {
        Bench::run(o, &stop)?
    };
    let _stop_threads = StopOnDrop(stop.clone());
    let mut sides = vec![SideConfig {
        side: Side::Daemon,
        netns: bench.dut_netns.clone(),
        address: bench.address.clone(),
        db: bench.state_db,
        separator: bench.separator,
    }];
    if bench.floor_netns.is_some() {
        sides.push(SideConfig {
            side: Side::Floor,
            netns: bench.floor_netns.clone(),
            address: bench.address.clone(),
            db: bench.floor_db,
            separator: bench.separator,
        });
    }
    let watcher = Watcher::start(&bench.ports, &sides, &stop)?;
    let floor = match &bench.floor_netns {
        Some(ns) => {
            let f = floor::Floor::start(
                floor::FloorKind::Port,
                ns,
                &bench.address,
                bench.floor_db,
                bench.separator,
            )?;
            f.place(o.floor_cpu, o.floor_sched)?;
            Some(f)
        }
        None => None,
    };
    bench.create_ports(&stop)?;
    bench.wait_port_init_done()?;
    let description = bench.description.clone();
    let n_ports = bench.ports.len();

    let mut driver = Driver::new(o, &mut bench, &stop, watcher, floor)?;
    let results = run_modes(o, &mut driver);
    let restored = if o.sub == cli::Sub::Attach {
        driver.restore()
    } else {
        Ok(())
    };
    driver.progress.clear();
    let finished = driver.finish();
    let results = results?;
    restored?;
    finished?;
    let state = if o.show_state {
        Some(final_state(&bench)?)
    } else {
        None
    };
    let totals = bench.stop_daemon();

    let mut wrong = 0;
    for m in &results {
        print!("{}", report::summary(m, n_ports, &totals));
        if let Some(t) = report::Totals::of(m, Side::Daemon) {
            wrong += t.wrong_final_states;
        }
    }
    if let Some(state) = state {
        print!("{state}");
    }
    if let Some(path) = &o.json {
        let mut doc = report::json_document(
            &results,
            &RunInfo {
                argv: &o.argv,
                setup: &description,
                ports: n_ports,
                daemon_totals: &totals,
            },
        );
        provenance::stamp(&mut doc);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::failed(format!("encoding JSON: {e}")))?;
        write_file("--json", path, &(text + "\n"))?;
    }
    if let Some(path) = &o.plot {
        let svg = plot::svg(&results, &o.argv.join(" "), &description);
        write_file("--plot", path, &svg)?;
    }
    if let Some(path) = &o.raw {
        write_file("--raw", path, &report::raw_csv(&results))?;
    }
    Ok(wrong)
}

/// Every mode: before the first, STATE_DB must match the kernel; then each
/// mode's rounds alternate daemon and floor in ABBA order.
fn run_modes(o: &Options, d: &mut Driver<'_>) -> Result<Vec<ModeResult>, Error> {
    for side in d.sides() {
        d.progress
            .show(|| format!("waiting for the {}'s initial writes", side.name()));
        let wrong = d.settle(side, o.settle_timeout, 0)?;
        if let Some(w) = wrong.first() {
            return Err(Error::failed(format!(
                "before any change, the {}'s STATE_DB does not match the kernel ({} ports), e.g. {w}",
                side.name(),
                wrong.len()
            )));
        }
    }
    let mut results = Vec::new();
    for plan in &o.modes {
        let mut phases = Vec::new();
        let rounds = plan.rounds as u64;
        for round in 0..rounds {
            let n = plan.count / rounds + u64::from(round < plan.count % rounds);
            if plan.mode == cli::Mode::Overflow {
                // The daemon only: the floor has no resync to measure.
                let label = format!("overflow round {}/{rounds}", round + 1);
                let r = d.overflow_phase(n as usize, &label)?;
                if let Some(ov) = &r.overflow {
                    d.progress.note(&format!(
                        "{label}: {} changes, {} kernel drops, recovered in {}, {} wrong final states",
                        r.changes,
                        ov.kernel_drops,
                        ov.recovery_ns
                            .map(|ns| format!("{:.2} ms", ns as f64 / 1e6))
                            .unwrap_or_else(|| "-".into()),
                        r.wrong.len()
                    ));
                }
                phases.push(r);
                continue;
            }
            let mut order = d.sides();
            if round % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let label = format!(
                    "{} round {}/{rounds} {}",
                    plan.mode.name(),
                    round + 1,
                    side.name()
                );
                let r = d.phase(plan.mode, side, n as usize, &label)?;
                let p50 = r.hist.value_at_quantile(0.5) as f64 / 1e3;
                d.progress.note(&format!(
                    "{label}: {} changes, p50 {p50:.1} µs, {} wrong final states",
                    r.changes,
                    r.wrong.len()
                ));
                phases.push(r);
            }
        }
        results.push(ModeResult {
            plan: plan.clone(),
            phases,
        });
    }
    Ok(results)
}
