//! portsyncd's middle of the engine's loop: the kernel follower with its
//! port table, and three Redis sessions. Follow one event:
//! `EventLoop::drain_netlink` (engine/event_loop.rs) → `LinkSync::on_datagram`
//! (port/follow.rs) → `PortTable::apply` (port/table.rs) →
//! `StateSession::write` (port/session/state.rs) → `RedisConn::flush`
//! (engine/redis/conn.rs) → `StateReplies::on_reply`.

use crate::engine::event_loop::{LoopIo, Syncer, FIRST_SYNCER_TOKEN};
use crate::engine::metrics::{Daemon, Recorder, SampleKind};
use crate::engine::reactor::{Readiness, Token};
use crate::engine::redis::conn::RedisConn;
use crate::engine::redis::session;
use crate::engine::runtime::config::Config;
use crate::engine::sonic::dbconfig::{Database, Databases};
use crate::engine::sonic::logger::{LoggerFollow, RunLog};
use crate::log_debug;
use crate::port::follow::LinkSync;
use crate::port::keys::PortKeys;
use crate::port::selfcheck::SelfCheck;
use crate::port::session::appl::ApplSession;
use crate::port::session::events::EventsSession;
use crate::port::session::state::StateSession;
use crate::port::session::PortWork;

const STATE_CONN: Token = FIRST_SYNCER_TOKEN;
const APPL_CONN: Token = FIRST_SYNCER_TOKEN + 1;
const EVENTS_CONN: Token = FIRST_SYNCER_TOKEN + 2;

/// Bytes queued at most on the subscription connection (it only sends
/// the subscriptions).
const EVENTS_BUFFER_BYTES: usize = 64 << 10;

/// The port syncer: what portsyncd adds to the engine's loop.
pub struct PortSyncer {
    work: PortWork,
    state: StateSession,
    appl: ApplSession,
    events: EventsSession,
    /// Re-check of netdevs not (yet) in APPL_DB `PORT_TABLE`.
    poll_interval_ns: u64,
    next_poll_ns: u64,
}

impl PortSyncer {
    /// The syncer over the follower start-up filled; connections open on
    /// the loop's first turn.
    pub fn new(
        cfg: &Config,
        dbs: &Databases,
        keys: PortKeys,
        sync: LinkSync,
        logger: LoggerFollow,
    ) -> PortSyncer {
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
        PortSyncer {
            state: StateSession::new(
                conn("STATE_DB", &dbs.state, r.write_buffer_bytes, cfg),
                keys.clone(),
            ),
            appl: ApplSession::new(
                conn("APPL_DB", &dbs.appl, r.write_buffer_bytes, cfg),
                keys.clone(),
                logger,
            ),
            events: EventsSession::new(
                conn("APPL_DB events", &dbs.appl, EVENTS_BUFFER_BYTES, cfg),
                keys,
            ),
            work: PortWork {
                sync,
                logger_wanted: false,
                selfcheck: SelfCheck::new(cfg.verify.interval_s, 0),
            },
            poll_interval_ns: r.port_table_poll_ms * 1_000_000,
            next_poll_ns: 0,
        }
    }
}

impl Syncer for PortSyncer {
    type Follow = LinkSync;

    fn follow(&mut self) -> &mut LinkSync {
        &mut self.work.sync
    }

    fn on_ready(&mut self, ev: Readiness, io: &mut LoopIo<'_>) {
        let w = &mut self.work;
        match ev.token {
            STATE_CONN => session::on_ready(&mut self.state, w, ev, io),
            APPL_CONN => session::on_ready(&mut self.appl, w, ev, io),
            EVENTS_CONN => session::on_ready(&mut self.events, w, ev, io),
            _ => {}
        }
    }

    fn on_timers(&mut self, now: u64, io: &mut LoopIo<'_>) -> Option<u64> {
        let w = &mut self.work;
        session::poll_connect(&mut self.state, w, STATE_CONN, io);
        session::poll_connect(&mut self.appl, w, APPL_CONN, io);
        session::poll_connect(&mut self.events, w, EVENTS_CONN, io);
        if now >= self.next_poll_ns {
            let n = w.sync.ports.requery_absent();
            if n > 0 {
                log_debug!("asking APPL_DB again about {n} ports not in PORT_TABLE yet");
            }
            self.next_poll_ns = now + self.poll_interval_ns;
        }
        self.state.replies.on_timer(&mut w.sync.ports, now);
        w.selfcheck
            .on_timer(now, &mut w.sync, &io.recorder.counters);
        self.appl.on_timer(now);
        // The earliest instant any of them wants a turn.
        [
            self.state.conn.retry_at(),
            self.appl.conn.retry_at(),
            self.events.conn.retry_at(),
            self.state.replies.next_retry(),
            self.appl.next_resend(),
            (w.sync.ports.held() > 0).then_some(self.next_poll_ns),
            w.selfcheck.next_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn write(&mut self, io: &mut LoopIo<'_>) {
        let w = &mut self.work;
        let settled = self.state.unsettled(&w.sync.ports) == Some(0) && self.appl.conn.is_up();
        if w.selfcheck.read_due(settled) {
            let queued = self.state.queue_verify(&w.sync.ports);
            if queued > 0 {
                self.appl.queue_recheck(&w.sync.ports);
                w.selfcheck.reading(queued);
            }
        }
        // Status changes go to the metrics thread, which writes their lines.
        let recorder = io.recorder;
        let lost = w
            .sync
            .ports
            .take_changes(|packed| recorder.record(SampleKind::PortChange, packed));
        if lost > 0 {
            io.recorder.counters.samples_dropped.add(lost);
        }
        let stale = w.selfcheck.take_stale();
        if !stale.is_empty() {
            self.state.queue_remove(&stale);
        }
        self.state.write(w, io);
        self.appl.write(w, io);
        self.events.write(w, io);
    }

    fn ready(&self) -> bool {
        self.state.replies.selected && self.appl.replies.script_loaded
    }

    fn unsettled(&self) -> Option<usize> {
        self.state.unsettled(&self.work.sync.ports)
    }

    fn tick(&mut self, recorder: &Recorder) {
        let c = &recorder.counters;
        let ports = &self.work.sync.ports;
        c.known_ports.set(ports.len() as u64);
        c.pending_ports.set(ports.held() as u64);
        c.dirty_ports.set(ports.dirty() as u64);
        c.redis_up.set(u64::from(self.state.conn.is_up()));
    }

    fn reloaded(&mut self, new: &Config) {
        // CONFIG_DB's LOGGER values, when someone set them, still win.
        self.appl.reload_log(RunLog {
            level: new.log.level.0,
            output: new.log.output.resolve(),
        });
    }

    fn log_totals(&self, recorder: &Recorder) {
        crate::log_notice!("{}", recorder.counters.totals(Daemon::Portsyncd));
    }
}
