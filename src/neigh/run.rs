//! neighsyncd from a valid configuration to its exit status: launch the
//! process, run SONiC's start-up, then the engine's loop with the neighbor
//! syncer in the middle.

use std::sync::Arc;

use crate::engine::event_loop::{EventLoop, Exit};
use crate::engine::runtime::config::{Config, ConfigSource};
use crate::engine::runtime::launch::{self, failed, EXIT_FAILURE};
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::startup::StartupIo;
use crate::engine::sys::monotonic_ns;
use crate::log_notice;
use crate::neigh::daemon::{NeighSyncer, WarmWait};
use crate::neigh::follow::NeighSync;
use crate::neigh::keys::{NeighKeys, DAEMON};
use crate::neigh::startup::{Outcome, Startup};
use crate::neigh::table::NeighTable;

/// Neighbors the table has room for before it grows.
const INITIAL_NEIGHBORS: usize = 4096;

/// Run neighsyncd; returns the exit status.
pub fn run(cfg: Config, dbs: Databases, source: ConfigSource) -> u8 {
    match run_inner(cfg, dbs, source) {
        Ok(code) | Err(code) => code,
    }
}

fn run_inner(cfg: Config, dbs: Databases, source: ConfigSource) -> Result<u8, u8> {
    let l = launch::launch(&cfg, DAEMON)?;
    let keys = NeighKeys::new(&dbs);
    let outcome = Startup {
        dbs: &dbs,
        keys: &keys,
        io: StartupIo {
            cfg: &cfg,
            signals: &l.signals,
            notifier: &l.notifier,
        },
    }
    .run(l.ring)
    .map_err(|e| failed("start-up", &e))?;
    let started = match outcome {
        Outcome::Ready(s) => s,
        Outcome::Stopped(sig) => {
            log_notice!("signal {sig} during start-up: exiting");
            l.notifier.stopping();
            l.metrics.stop();
            return Ok(0);
        }
        Outcome::RestoreTimeout => {
            l.metrics.stop();
            return Ok(EXIT_FAILURE);
        }
    };
    let started = *started;
    let counters = Arc::clone(&l.recorder.counters);
    counters.rcvbuf_bytes.set(started.rcvbuf.effective as u64);
    let sync = NeighSync::new(
        NeighTable::with_capacity(INITIAL_NEIGHBORS),
        started.config,
        counters,
    );
    let warm = started.warm.map(|(snapshot, timer_s)| WarmWait {
        snapshot,
        deadline_ns: monotonic_ns() + timer_s * 1_000_000_000,
    });
    let warm_start = warm.is_some();
    log_notice!(
        "start-up done in {:.1} ms ({} start); dumping links and neighbors",
        started.elapsed.as_secs_f64() * 1e3,
        if warm_start { "warm" } else { "cold" }
    );
    let syncer = NeighSyncer::new(&cfg, &dbs, keys, sync, warm, started.logger);
    let mut event_loop = EventLoop::new(
        cfg,
        l.reactor,
        l.signals,
        l.notifier,
        l.recorder,
        (started.reader, 0),
        syncer,
    )
    .map_err(|e| failed("event loop", &e))?;
    event_loop.set_reload(source, l.metrics.control());
    event_loop.announce_ready(format!(
        "running: {} start, neighbors synced",
        if warm_start { "warm" } else { "cold" }
    ));
    let exit = event_loop.run().map_err(|e| failed("event loop", &e))?;
    l.metrics.stop();
    match exit {
        Exit::Stopped(sig) => {
            log_notice!("stopped by signal {sig}");
            Ok(0)
        }
    }
}
