//! portsyncd from a valid configuration to its exit status: launch the
//! process, run SONiC's start-up, then the engine's loop with the port
//! syncer in the middle.

use crate::engine::event_loop::{EventLoop, Exit};
use crate::engine::netlink::reader::LinkReader;
use crate::engine::netlink::ring::RecvRing;
use crate::engine::runtime::config::{Config, ConfigSource};
use crate::engine::runtime::launch::{self, failed, Launched};
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::signals::Signals;
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::startup::StartupIo;
use crate::log_notice;
use crate::port::daemon::PortSyncer;
use crate::port::follow::LinkSync;
use crate::port::keys::{PortKeys, DAEMON};
use crate::port::startup::{StartInfo, Started, Startup};
use crate::port::table::PortTable;

/// Run portsyncd; returns the exit status.
pub fn run(cfg: Config, dbs: Databases, source: ConfigSource) -> u8 {
    match run_inner(cfg, dbs, source) {
        Ok(code) | Err(code) => code,
    }
}

fn run_inner(cfg: Config, dbs: Databases, source: ConfigSource) -> Result<u8, u8> {
    let Launched {
        signals,
        notifier,
        ring,
        recorder,
        metrics,
        reactor,
    } = launch::launch(&cfg, DAEMON)?;
    let keys = PortKeys::new(&dbs);
    let sync = LinkSync::new(PortTable::with_capacity(256), recorder.counters.clone());
    let Some(Up {
        sync,
        info,
        netlink,
    }) = start(&cfg, &dbs, &keys, &signals, &notifier, ring, sync)?
    else {
        notifier.stopping();
        metrics.stop();
        return Ok(0);
    };
    recorder
        .counters
        .rcvbuf_bytes
        .set(info.rcvbuf.effective as u64);
    let syncer = PortSyncer::new(&cfg, &dbs, keys, sync, info.logger.clone());
    let mut event_loop = EventLoop::new(cfg, reactor, signals, notifier, recorder, netlink, syncer)
        .map_err(|e| failed("event loop", &e))?;
    event_loop.set_reload(source, metrics.control());
    event_loop.announce_ready(format!(
        "running: {} configured ports, {} start",
        info.configured_ports,
        if info.warm { "warm" } else { "cold" }
    ));
    let exit = event_loop.run().map_err(|e| failed("event loop", &e))?;
    metrics.stop();
    match exit {
        Exit::Stopped(sig) => {
            log_notice!("stopped by signal {sig}");
            Ok(0)
        }
    }
}

/// What start-up hands the loop.
struct Up {
    sync: LinkSync,
    info: Box<StartInfo>,
    /// The event socket's reader and the last dump sequence it used.
    netlink: (LinkReader, u32),
}

/// SONiC's start-up; `None` when a stop signal came first.
fn start(
    cfg: &Config,
    dbs: &Databases,
    keys: &PortKeys,
    signals: &Signals,
    notifier: &Notifier,
    ring: RecvRing,
    mut sync: LinkSync,
) -> Result<Option<Up>, u8> {
    let started = Startup {
        cfg,
        dbs,
        keys,
        io: StartupIo {
            cfg,
            signals,
            notifier,
        },
        sync: &mut sync,
    }
    .run(ring)
    .map_err(|e| failed("start-up", &e))?;
    let (info, reader, dump_seq) = match started {
        Started::Ready {
            info,
            reader,
            dump_seq,
        } => (info, reader, dump_seq),
        Started::Stopped(sig) => {
            log_notice!("signal {sig} during start-up: exiting");
            return Ok(None);
        }
    };
    log_notice!(
        "ready in {:.1} ms: {} start, {} configured ports, {} old interfaces, {} ports known",
        info.elapsed.as_secs_f64() * 1e3,
        if info.warm { "warm" } else { "cold" },
        info.configured_ports,
        info.old_interfaces,
        sync.ports.len()
    );
    Ok(Some(Up {
        sync,
        info,
        netlink: (*reader, dump_seq),
    }))
}
