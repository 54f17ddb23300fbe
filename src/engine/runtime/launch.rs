//! What every daemon does between a valid configuration and its start-up:
//! signals blocked before any thread exists, the receive ring locked, the
//! metrics thread started (before the loop thread is pinned and made
//! real-time, so it inherits neither), the loop thread placed, the reactor
//! built. Each refusal is a warning, or exit 2 under `runtime.strict`.
//!
//! The daemon's name picks its metrics ([`Daemon`]): `"portsyncd"` and
//! `"neighsyncd"` export their own families, each with its prefix.

use crate::engine::metrics::export::MetricsThread;
use crate::engine::metrics::{Daemon, Recorder};
use crate::engine::netlink::ring::{RecvRing, RingLock};
use crate::engine::reactor::Reactor;
use crate::engine::runtime::config::Config;
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::placement::{self, Refused};
use crate::engine::runtime::signals::Signals;
use crate::{log_error, log_notice, log_warn};

/// Exit status: the daemon could not run.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad usage or configuration (systemd does not restart it).
pub const EXIT_USAGE: u8 = 2;

/// The process, ready for a syncer's start-up.
pub struct Launched {
    pub signals: Signals,
    pub notifier: Notifier,
    pub ring: RecvRing,
    pub recorder: Recorder,
    pub metrics: MetricsThread,
    pub reactor: Reactor,
}

/// Log `what` failed and give the exit status for it.
pub fn failed(what: &str, e: &dyn std::fmt::Display) -> u8 {
    log_error!("{what}: {e}");
    EXIT_FAILURE
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

/// Set the process up for `daemon` (`"portsyncd"`, `"neighsyncd"`: the
/// name also chooses the metrics, [`Daemon::from_name`]); `Err` is the exit
/// status.
pub fn launch(cfg: &Config, daemon: &str) -> Result<Launched, u8> {
    let Some(metrics_for) = Daemon::from_name(daemon) else {
        let known = Daemon::ALL.map(Daemon::name).join(", ");
        return Err(failed(
            "metrics",
            &format!("no metrics for a daemon named {daemon:?} (known: {known})"),
        ));
    };
    // Before any thread exists, so every thread inherits the blocked mask.
    let signals = Signals::install().map_err(|e| failed("signals", &e))?;
    let notifier = Notifier::from_env();
    let strict = cfg.runtime.strict;

    if cfg.runtime.mlock_all {
        placement_result(strict, placement::lock_all_memory())?;
    }
    let ring = RecvRing::new(cfg.netlink.ring_bytes).map_err(|e| failed("receive ring", &e))?;
    if let RingLock::Refused(errno) = ring.lock() {
        placement_result(
            strict,
            Err(placement::ring_lock_refused(errno, ring.capacity())),
        )?;
    }

    let (recorder, samples) = Recorder::with_capacity(metrics_for.sample_capacity());
    // The metrics thread first: it must not inherit the loop's pinning and
    // real-time policy.
    let mut metrics = MetricsThread::spawn(
        &cfg.metrics,
        metrics_for,
        recorder.counters.clone(),
        samples,
    )
    .map_err(|e| failed("metrics thread", &e))?;
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

    let reactor = Reactor::build(cfg.runtime.reactor).map_err(|e| failed("reactor", &e))?;
    log_notice!(
        "{daemon} {} starting; reactor {}",
        env!("CARGO_PKG_VERSION"),
        reactor.name()
    );
    Ok(Launched {
        signals,
        notifier,
        ring,
        recorder,
        metrics,
        reactor,
    })
}
