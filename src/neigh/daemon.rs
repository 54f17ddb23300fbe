//! neighsyncd's middle of the engine's loop: the kernel follower with its
//! neighbor table, and three Redis sessions. Follow one event:
//! `EventLoop::drain_netlink` (engine/event_loop.rs) → `NeighSync::on_datagram`
//! (neigh/follow.rs) → `rules::decide` (neigh/rules.rs) → `NeighTable::apply`
//! (neigh/table.rs) → `encode_neighbor_writes` (neigh/session/appl.rs) →
//! `RedisConn::flush` (engine/redis/conn.rs) → `ApplReplies::on_reply`.

use crate::engine::event_loop::{LoopIo, Syncer, FIRST_SYNCER_TOKEN};
use crate::engine::metrics::Recorder;
use crate::engine::reactor::{Readiness, Token};
use crate::engine::redis::conn::RedisConn;
use crate::engine::redis::session;
use crate::engine::runtime::config::Config;
use crate::engine::sonic::dbconfig::{Database, Databases};
use crate::engine::sonic::logger::{LoggerFollow, RunLog};
use crate::neigh::follow::NeighSync;
use crate::neigh::keys::NeighKeys;
use crate::neigh::selfcheck::SelfCheck;
use crate::neigh::session::appl::ApplSession;
use crate::neigh::session::config::ConfigSession;
use crate::neigh::session::events::EventsSession;
use crate::neigh::session::NeighWork;
use crate::neigh::warm::WarmOp;
use crate::neigh::warm::{self, Snapshot};
use crate::{log_notice, log_warn};

const APPL_CONN: Token = FIRST_SYNCER_TOKEN;
const CONFIG_CONN: Token = FIRST_SYNCER_TOKEN + 1;
const EVENTS_CONN: Token = FIRST_SYNCER_TOKEN + 2;

/// Bytes queued at most on the CONFIG_DB connections (small reads only).
const CONFIG_BUFFER_BYTES: usize = 256 << 10;
/// CONFIG_DB is read again this often even without a notification (Redis
/// servers with keyspace notifications off).
const CONFIG_POLL_NS: u64 = 10_000_000_000;

/// A warm start waiting for its reconciliation.
pub struct WarmWait {
    /// APPL_DB `NEIGH_TABLE` as it was at start-up.
    pub snapshot: Snapshot,
    /// SONiC's reconcile timer ends here; the reconciliation also waits
    /// for the first complete neighbor dump.
    pub deadline_ns: u64,
}

/// The neighbor syncer: what neighsyncd adds to the engine's loop.
pub struct NeighSyncer {
    work: NeighWork,
    appl: ApplSession,
    config: ConfigSession,
    events: EventsSession,
    warm: Option<WarmWait>,
    next_config_poll_ns: u64,
}

impl NeighSyncer {
    /// The syncer over the follower start-up prepared; connections open on
    /// the loop's first turn.
    pub fn new(
        cfg: &Config,
        dbs: &Databases,
        keys: NeighKeys,
        sync: NeighSync,
        warm: Option<WarmWait>,
        logger: LoggerFollow,
    ) -> NeighSyncer {
        let r = &cfg.redis;
        fn conn<T>(role: &'static str, db: &Database, bytes: usize, cfg: &Config) -> RedisConn<T> {
            let r = &cfg.redis;
            RedisConn::new(
                role,
                db.instance.clone(),
                bytes,
                r.retry_min_ms,
                r.retry_max_ms,
            )
        }
        let mut work = NeighWork {
            sync,
            config_wanted: false,
            logger,
            selfcheck: SelfCheck::new(cfg.verify.interval_s),
        };
        if warm.is_some() {
            work.sync.table.hold(true);
        }
        NeighSyncer {
            appl: ApplSession::new(
                conn("APPL_DB", &dbs.appl, r.write_buffer_bytes, cfg),
                keys.clone(),
                dbs.state.clone(),
            ),
            config: ConfigSession::new(
                conn("CONFIG_DB", &dbs.config, CONFIG_BUFFER_BYTES, cfg),
                keys.clone(),
            ),
            events: EventsSession::new(
                conn("CONFIG_DB events", &dbs.config, CONFIG_BUFFER_BYTES, cfg),
                keys,
            ),
            work,
            warm,
            next_config_poll_ns: 0,
        }
    }

    /// The follower (for tests and the totals).
    pub fn sync(&self) -> &NeighSync {
        &self.work.sync
    }

    /// Warm restart: once the timer ran out and the kernel's table was
    /// dumped whole, write the difference with the snapshot.
    fn reconcile_if_due(&mut self, now: u64, recorder: &Recorder) {
        let Some(w) = &self.warm else { return };
        if now < w.deadline_ns || self.work.sync.neighbor_dumps() == 0 {
            return;
        }
        let Some(w) = self.warm.take() else { return };
        let sync = &mut self.work.sync;
        let r = warm::reconcile(&w.snapshot, &sync.table, &sync.links);
        for line in &r.lines {
            log_notice!("{line}");
        }
        let c = &recorder.counters;
        c.warm_new.add(r.new);
        c.warm_same.add(r.same);
        c.warm_stale.add(r.stale);
        c.warm_delete.add(r.delete);
        log_notice!(
            "warm restart reconciled: {} new, {} same, {} stale, {} deleted",
            r.new,
            r.same,
            r.stale,
            r.delete
        );
        self.appl.text_ops.extend(r.ops);
        self.appl.warm_state_owed = true;
        sync.table.reconciled(&sync.links);
    }
}

impl Syncer for NeighSyncer {
    type Follow = NeighSync;

    fn follow(&mut self) -> &mut NeighSync {
        &mut self.work.sync
    }

    fn on_ready(&mut self, ev: Readiness, io: &mut LoopIo<'_>) {
        let w = &mut self.work;
        match ev.token {
            APPL_CONN => session::on_ready(&mut self.appl, w, ev, io),
            CONFIG_CONN => session::on_ready(&mut self.config, w, ev, io),
            EVENTS_CONN => session::on_ready(&mut self.events, w, ev, io),
            _ => {}
        }
    }

    fn on_timers(&mut self, now: u64, io: &mut LoopIo<'_>) -> Option<u64> {
        let w = &mut self.work;
        session::poll_connect(&mut self.appl, w, APPL_CONN, io);
        session::poll_connect(&mut self.config, w, CONFIG_CONN, io);
        session::poll_connect(&mut self.events, w, EVENTS_CONN, io);
        if now >= self.next_config_poll_ns {
            w.config_wanted = true;
            self.next_config_poll_ns = now + CONFIG_POLL_NS;
        }
        self.appl.on_timer(w, now);
        let sync = &mut w.sync;
        if self.warm.is_none() {
            w.selfcheck
                .on_timer(now, sync.neighbor_dumps(), || sync.want_dump());
        }
        self.reconcile_if_due(now, io.recorder);
        // The earliest instant any of them wants a turn.
        [
            self.appl.conn.retry_at(),
            self.config.conn.retry_at(),
            self.events.conn.retry_at(),
            self.appl.next_retry(),
            Some(self.next_config_poll_ns),
            self.work.selfcheck.next_timer(),
            // Past the deadline, the reconciliation waits for the dump
            // (write() runs it then), not for a timer.
            self.warm
                .as_ref()
                .map(|w| w.deadline_ns)
                .filter(|&d| d > now),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn write(&mut self, io: &mut LoopIo<'_>) {
        let w = &mut self.work;
        if self.warm.is_some() && w.sync.neighbor_dumps() > 0 {
            // The first dump completed during the window's end: reconcile now.
            self.reconcile_if_due(crate::engine::sys::monotonic_ns(), io.recorder);
        }
        let w = &mut self.work;
        let settled = self.appl.unsettled(&w.sync.table) == Some(0);
        if w.selfcheck.read_due(w.sync.neighbor_dumps(), settled) && self.appl.queue_verify() > 0 {
            w.selfcheck.reading(w.sync.table.writes(), &w.sync.links);
        }
        let repairs = std::mem::take(&mut w.selfcheck.repairs);
        let now = crate::engine::sys::monotonic_ns();
        for key in repairs.rewrite {
            w.sync.table.rewrite(&key, now);
        }
        for key in repairs.delete {
            self.appl.text_ops.push_back(WarmOp::Del { key });
        }
        self.appl.write(w, io);
        self.config.write(w, io);
        self.events.write(w, io);
    }

    fn ready(&self) -> bool {
        self.appl.replies.scripts_loaded
            && self.warm.is_none()
            && self.work.sync.neighbor_dumps() > 0
            && self.unsettled() == Some(0)
    }

    fn unsettled(&self) -> Option<usize> {
        self.appl.unsettled(&self.work.sync.table)
    }

    fn tick(&mut self, recorder: &Recorder) {
        let c = &recorder.counters;
        let t = &self.work.sync.table;
        c.known_neighbors.set(t.len() as u64);
        c.dirty_neighbors.set((t.dirty() + t.stale_len()) as u64);
        c.redis_up.set(u64::from(self.appl.conn.is_up()));
    }

    fn reloaded(&mut self, new: &Config) {
        // CONFIG_DB's LOGGER values, when someone set them, still win.
        self.config.reload_log(
            &mut self.work,
            RunLog {
                level: new.log.level.0,
                output: new.log.output.resolve(),
            },
        );
    }

    fn log_totals(&self, recorder: &Recorder) {
        if self.warm.is_some() {
            log_warn!("stopping before warm restart's reconciliation");
        }
        crate::log_notice!(
            "{}",
            recorder
                .counters
                .totals(crate::engine::metrics::Daemon::Neighsyncd)
        );
    }
}
