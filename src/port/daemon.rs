//! The event loop: one thread, every fd, one Redis write per turn.
//!
//! A turn: wait for readiness → drain netlink into the port table (up to
//! `max_batch_datagrams`) → read Redis replies → write every port owed, as
//! one pipelined batch with one `send` per connection. Follow one event:
//! `Daemon::drain_netlink` → `LinkSync::on_datagram` (sync.rs) →
//! `PortTable::apply` (port/table.rs) → `Daemon::write_ports` →
//! `RedisConn::flush` (redis/conn.rs) → `Daemon::read_state`.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::engine::metrics::export::MetricsControl;
use crate::engine::metrics::{Recorder, SampleKind};
use crate::engine::netlink::drain::{drain, request_dump, Drained};
use crate::engine::netlink::reader::LinkReader;
use crate::engine::reactor::{Reactor, Readiness, Token};
use crate::engine::redis::conn::{ConnectStep, Connection, LinkState, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::runtime::config::{Config, ConfigSource, RELOADABLE};
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::signals::{Signal, Signals};
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::pst::{ProducerTable, PstSet, SET_SCRIPT_SHA};
use crate::engine::sys::{monotonic_ns, thread_cpu_ns};
use crate::port::follow::LinkSync;
use crate::port::table::{PortId, PortTable};
use crate::{log_debug, log_error, log_notice, log_warn};

const NETLINK: Token = 0;
const SIGNALS: Token = 1;
const STATE_CONN: Token = 2;
const APPL_CONN: Token = 3;
const EVENTS_CONN: Token = 4;

/// How long a stop waits for the batch in flight to be acknowledged.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Error replies that mean "try again later", not "this command is wrong".
const RETRY_LATER: [&[u8]; 3] = [b"LOADING", b"BUSY", b"TRYAGAIN"];
/// Delay before writing again after a retry-later error.
const RETRY_LATER_MS: u64 = 100;
/// Netlink turns in a row, each closer than `coalesce_us` to the one before,
/// that make a burst.
const BURST_TURNS: u32 = 3;
/// Housekeeping period: gauges, status line.
const TICK_NS: u64 = 1_000_000_000;

/// What a STATE_DB command in flight is.
#[derive(Debug, Clone, Copy)]
pub enum StateTag {
    Select,
    Hset { port: PortId, since_ns: u64 },
    Del { port: PortId, since_ns: u64 },
}

/// What an APPL_DB command in flight is.
#[derive(Debug, Clone, Copy)]
pub enum ApplTag {
    Select,
    ScriptLoad,
    /// Index into the ProducerStateTable outbox.
    Pst(usize),
    Exists(PortId),
    /// `HGET LOGGER|portsyncd LOGLEVEL` in CONFIG_DB (between two SELECTs).
    LogLevel,
}

/// A ProducerStateTable set owed to APPL_DB (`PortInitDone`).
struct OutboxItem {
    set: PstSet,
    acked: bool,
    sent: bool,
}

/// Apply CONFIG_DB `LOGGER|portsyncd` `LOGLEVEL` (SONiC's `swssloglevel`);
/// without one, the configured level.
fn apply_loglevel(reply: &Reply<'_>, configured: crate::engine::runtime::log::Level) {
    let level = match reply {
        Reply::Bulk(v) => {
            match crate::engine::runtime::log::Level::parse(&String::from_utf8_lossy(v)) {
                Some(l) => l,
                None => {
                    log_warn!(
                        "CONFIG_DB LOGGER|portsyncd LOGLEVEL {:?} is not a level; ignored",
                        String::from_utf8_lossy(v)
                    );
                    return;
                }
            }
        }
        Reply::Nil => configured,
        other => {
            log_warn!("CONFIG_DB: HGET LOGGER|portsyncd LOGLEVEL answered {other:?}");
            return;
        }
    };
    crate::engine::runtime::log::change_level(level, "CONFIG_DB LOGGER|portsyncd");
}

/// One loop turn's STATE_DB encoding: take every write owed while the
/// connection's buffer has room, `DEL` and/or `HSET` each with its tag,
/// count them, record the batch size. `written_since` gets each port's
/// oldest receive stamp, for the recv→write samples once the batch is sent.
/// Returns the commands queued. (Public for the benches and the
/// allocation test, which run it without sockets.)
pub fn encode_port_writes(
    ports: &mut PortTable,
    conn: &mut RedisConn<StateTag>,
    prefix: &[u8],
    recorder: &Recorder,
    written_since: &mut Vec<u64>,
) -> u64 {
    let c = &recorder.counters;
    let mut commands = 0u64;
    written_since.clear();
    while let Some(w) = ports.peek_write() {
        let key_len = prefix.len() + w.name.as_bytes().len();
        let need = encode::del_key_max_len(key_len) + encode::hset_port_status_max_len(key_len);
        if conn.room() < need {
            break;
        }
        let w = ports.pop_write().unwrap_or(w);
        if w.del {
            let tag = StateTag::Del {
                port: w.port,
                since_ns: w.since_ns,
            };
            conn.push(tag, |out| encode::del_key(out, prefix, w.name.as_bytes()));
            c.ports_deleted.inc();
            commands += 1;
        }
        if let Some(status) = w.hset {
            let tag = StateTag::Hset {
                port: w.port,
                since_ns: w.since_ns,
            };
            conn.push(tag, |out| {
                encode::hset_port_status(out, prefix, w.name.as_bytes(), &status)
            });
            c.ports_written.inc();
            commands += 1;
        }
        if written_since.len() < written_since.capacity() {
            written_since.push(w.since_ns);
        } else {
            // More ports in one batch than sample slots: counted, not lost silently.
            c.samples_dropped.inc();
        }
    }
    if commands > 0 {
        c.batches.inc();
        recorder.record(SampleKind::BatchSize, commands);
    }
    commands
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A stop signal; the batch in flight was finished.
    Stopped(i32),
}

/// Everything the loop owns.
pub struct Daemon {
    cfg: Config,
    reactor: Reactor,
    signals: Signals,
    notifier: Notifier,
    recorder: Recorder,
    reader: LinkReader,
    sync: LinkSync,
    dump_seq: u32,
    netlink_more: bool,
    state: RedisConn<StateTag>,
    appl: RedisConn<ApplTag>,
    events: RedisConn<()>,
    state_db: u32,
    appl_db: u32,
    /// `PORT_TABLE|` in STATE_DB.
    state_prefix: Vec<u8>,
    /// `PORT_TABLE:` in APPL_DB.
    appl_prefix: Vec<u8>,
    /// `__keyspace@0__:PORT_TABLE:` — the channel prefix of APPL_DB port events.
    keyspace_prefix: Vec<u8>,
    producer: ProducerTable,
    outbox: Vec<OutboxItem>,
    init_done_queued: bool,
    /// Ports whose write got a retry-later error, and when to retry.
    retry_ports: Vec<PortId>,
    retry_at_ns: u64,
    next_poll_ns: u64,
    next_tick_ns: u64,
    next_watchdog_ns: u64,
    stopping: Option<(i32, u64)>,
    /// When the last turn that read netlink datagrams ended, and how many
    /// such turns in a row came closer together than `coalesce_us`.
    last_netlink_turn_ns: u64,
    close_turns: u32,
    /// CONFIG_DB number and `LOGGER|portsyncd`, SONiC's log level switch.
    config_db: u32,
    logger_key: Vec<u8>,
    /// `__keyspace@<config>__:LOGGER|portsyncd`.
    logger_channel: Vec<u8>,
    /// CONFIG_DB shares APPL_DB's instance, so the log level is followed
    /// live (keyspace events) and read through the APPL_DB connection.
    logger_live: bool,
    loglevel_wanted: bool,
    /// What SIGHUP reloads.
    source: Option<ConfigSource>,
    /// Changes the metrics thread's summary interval on SIGHUP.
    metrics: Option<MetricsControl>,
    /// `READY=1` status waiting for both connections to be usable.
    ready_status: Option<String>,
    state_selected: bool,
    script_loaded: bool,
    /// Scratch buffers reused every turn.
    ready: Vec<Readiness>,
    queries: Vec<PortId>,
    written_since: Vec<u64>,
}

impl Daemon {
    /// Assemble the loop from what start-up produced.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        dbs: &Databases,
        reactor: Reactor,
        signals: Signals,
        notifier: Notifier,
        recorder: Recorder,
        reader: LinkReader,
        sync: LinkSync,
        dump_seq: u32,
    ) -> std::io::Result<Daemon> {
        let r = &cfg.redis;
        let state = RedisConn::new(
            "STATE_DB",
            dbs.state.instance.clone(),
            r.write_buffer_bytes,
            r.retry_min_ms,
            r.retry_max_ms,
        );
        let appl = RedisConn::new(
            "APPL_DB",
            dbs.appl.instance.clone(),
            r.write_buffer_bytes,
            r.retry_min_ms,
            r.retry_max_ms,
        );
        let mut events = RedisConn::new(
            "APPL_DB events",
            dbs.appl.instance.clone(),
            64 << 10,
            r.retry_min_ms,
            r.retry_max_ms,
        );
        events.set_push_mode(true);
        let mut reactor = reactor;
        reactor.register(reader.socket().as_raw_fd(), NETLINK)?;
        reactor.register(signals.as_raw_fd(), SIGNALS)?;
        let sep = dbs.appl.separator;
        let now = monotonic_ns();
        let logger_key = format!("LOGGER{}portsyncd", dbs.config.separator as char).into_bytes();
        let logger_channel = [
            format!("__keyspace@{}__:", dbs.config.id).as_bytes(),
            &logger_key[..],
        ]
        .concat();
        let d = Daemon {
            state_db: dbs.state.id,
            appl_db: dbs.appl.id,
            state_prefix: [&b"PORT_TABLE"[..], &[dbs.state.separator]].concat(),
            appl_prefix: [&b"PORT_TABLE"[..], &[sep]].concat(),
            keyspace_prefix: format!("__keyspace@{}__:PORT_TABLE{}", dbs.appl.id, sep as char)
                .into_bytes(),
            producer: ProducerTable::new("PORT_TABLE", dbs.appl.id, sep),
            outbox: Vec::new(),
            init_done_queued: false,
            retry_ports: Vec::new(),
            retry_at_ns: 0,
            next_poll_ns: now,
            next_tick_ns: now,
            next_watchdog_ns: now,
            stopping: None,
            last_netlink_turn_ns: 0,
            close_turns: 0,
            config_db: dbs.config.id,
            logger_key,
            logger_channel,
            logger_live: dbs.config.instance == dbs.appl.instance,
            loglevel_wanted: false,
            source: None,
            metrics: None,
            ready_status: None,
            state_selected: false,
            script_loaded: false,
            ready: Vec::with_capacity(64),
            queries: Vec::with_capacity(256),
            written_since: Vec::with_capacity(1024),
            cfg,
            reactor,
            signals,
            notifier,
            recorder,
            reader,
            sync,
            dump_seq,
            netlink_more: true,
            state,
            appl,
            events,
        };
        d.recorder.counters.reactor.set(d.reactor.gauge());
        Ok(d)
    }

    /// Send `READY=1` with `status` once STATE_DB is selected and the
    /// ProducerStateTable script is loaded on APPL_DB: from then on every
    /// link change is processed and written.
    pub fn announce_ready(&mut self, status: String) {
        self.ready_status = Some(status);
    }

    /// Where the configuration came from, and the metrics thread's
    /// control, for SIGHUP.
    pub fn set_reload(&mut self, source: ConfigSource, metrics: MetricsControl) {
        self.source = Some(source);
        self.metrics = Some(metrics);
    }

    /// SIGHUP: load the configuration again and apply what can change at
    /// run time; name what needs a restart. CONFIG_DB's LOGLEVEL, when
    /// set, wins over the file (as in SONiC), so it is read again too.
    fn reload(&mut self) {
        let Some(source) = &self.source else {
            log_notice!("SIGHUP: no configuration source to reload");
            return;
        };
        let new = match source.load() {
            Ok(c) => c,
            Err(e) => {
                log_error!("SIGHUP: configuration not reloaded: {e}");
                return;
            }
        };
        let changed = self.cfg.differences(&new);
        let (applied, ignored): (Vec<&String>, Vec<&String>) = changed
            .iter()
            .partition(|k| RELOADABLE.contains(&k.as_str()));
        crate::engine::runtime::log::set_level(new.log.level.0);
        self.loglevel_wanted = self.logger_live;
        if let Some(metrics) = &self.metrics {
            metrics.set_log_interval(new.metrics.log_interval_s);
        }
        if !ignored.is_empty() {
            let names: Vec<&str> = ignored.iter().map(|k| k.as_str()).collect();
            log_warn!(
                "SIGHUP: not reloaded, restart to apply: {}",
                names.join(", ")
            );
        }
        let names: Vec<&str> = applied.iter().map(|k| k.as_str()).collect();
        log_notice!(
            "SIGHUP: configuration reloaded{}",
            if names.is_empty() {
                String::new()
            } else {
                format!("; applied {}", names.join(", "))
            }
        );
        // Keep the running values of what was not applied.
        self.cfg.log = new.log;
        self.cfg.metrics.log_interval_s = new.metrics.log_interval_s;
    }

    /// Run until a stop signal.
    pub fn run(&mut self) -> std::io::Result<Exit> {
        loop {
            let now = monotonic_ns();
            self.timers(now);
            let timeout = self.next_timeout(now);
            self.ready.clear();
            let mut ready = std::mem::take(&mut self.ready);
            self.reactor.wait(timeout, &mut ready)?;
            let datagrams_before = self.recorder.counters.datagrams.get();
            self.recorder.counters.loop_turns.inc();
            for ev in &ready {
                self.dispatch(*ev);
            }
            self.ready = ready;
            if self.netlink_more && self.stopping.is_none() {
                self.drain_netlink();
            }
            if self.sync.dump_wanted() {
                request_dump(&self.reader, &mut self.sync, &mut self.dump_seq);
            }
            self.write_ports();
            self.write_appl();
            self.flush_all();
            if self.recorder.counters.datagrams.get() != datagrams_before {
                self.coalesce();
            }
            if self.state_selected && self.script_loaded {
                if let Some(status) = self.ready_status.take() {
                    self.notifier.ready(&status);
                }
            }
            if let Some((sig, deadline)) = self.stopping {
                let settled = !self.state.is_up()
                    || (self.state.in_flight() == 0
                        && self.state.unsent() == 0
                        && self.sync.ports.dirty() == 0);
                if settled || monotonic_ns() >= deadline {
                    if !settled {
                        log_warn!(
                            "stopping with {} STATE_DB writes unacknowledged",
                            self.state.in_flight()
                        );
                    }
                    self.log_totals();
                    return Ok(Exit::Stopped(sig));
                }
            }
        }
    }

    /// A turn read netlink datagrams. When several such turns in a row came
    /// closer together than `coalesce_us`, events arrive in a burst: sleep
    /// that long so the next turn takes a bigger batch (a wake-up costs more
    /// than several messages). One change at a time (a port's message, its
    /// peer's, the operstate change later) never looks like a burst.
    fn coalesce(&mut self) {
        let now = monotonic_ns();
        let window = self.cfg.runtime.coalesce_us * 1_000;
        if window > 0 && now.saturating_sub(self.last_netlink_turn_ns) < window {
            self.close_turns = self.close_turns.saturating_add(1);
        } else {
            self.close_turns = 0;
        }
        self.last_netlink_turn_ns = now;
        if self.close_turns >= BURST_TURNS && self.stopping.is_none() {
            std::thread::sleep(Duration::from_nanos(window));
        }
    }

    /// One line with the counters an operator (or a test) checks after a run.
    fn log_totals(&self) {
        let c = &self.recorder.counters;
        log_notice!(
            "totals: datagrams {} newlink {} dellink {} malformed {} enobufs {} truncations {} resyncs {} dump_restarts {} vanished {} written {} deleted {} batches {} reconnects {} error_replies {} samples_dropped {}",
            c.datagrams.get(),
            c.msgs_newlink.get(),
            c.msgs_dellink.get(),
            c.malformed.get(),
            c.enobufs.get(),
            c.truncations.get(),
            c.resyncs.get(),
            c.dump_restarts.get(),
            c.ports_vanished.get(),
            c.ports_written.get(),
            c.ports_deleted.get(),
            c.batches.get(),
            c.redis_reconnects.get(),
            c.redis_error_replies.get(),
            c.samples_dropped.get()
        );
    }

    fn next_timeout(&self, now: u64) -> Option<Duration> {
        if self.cfg.runtime.busy_poll || (self.netlink_more && self.stopping.is_none()) {
            return Some(Duration::ZERO);
        }
        let mut next = self.next_tick_ns;
        for t in [
            self.state.retry_at(),
            self.appl.retry_at(),
            self.events.retry_at(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        if self.sync.ports.held() > 0 {
            next = next.min(self.next_poll_ns);
        }
        if !self.retry_ports.is_empty() {
            next = next.min(self.retry_at_ns);
        }
        if self.notifier.watchdog_interval().is_some() {
            next = next.min(self.next_watchdog_ns);
        }
        if let Some((_, deadline)) = self.stopping {
            next = next.min(deadline);
        }
        Some(Duration::from_nanos(next.saturating_sub(now)))
    }

    fn dispatch(&mut self, ev: Readiness) {
        match ev.token {
            NETLINK if self.stopping.is_none() => self.drain_netlink(),
            SIGNALS => self.read_signals(),
            STATE_CONN if self.on_conn_ready(STATE_CONN, ev) => self.read_state(),
            APPL_CONN if self.on_conn_ready(APPL_CONN, ev) => self.read_appl(),
            EVENTS_CONN if self.on_conn_ready(EVENTS_CONN, ev) => self.read_events(),
            _ => {}
        }
    }

    // ---- netlink -------------------------------------------------------

    /// Read and apply datagrams until the socket is empty or the per-turn
    /// cap; a capped drain continues next turn, after this turn's write.
    fn drain_netlink(&mut self) {
        let counters = &*self.recorder.counters;
        let max = self.cfg.netlink.max_batch_datagrams;
        match drain(
            &mut self.reader,
            &mut self.sync,
            counters,
            &mut self.dump_seq,
            max,
        ) {
            Ok(Drained::Empty) => self.netlink_more = false,
            Ok(Drained::Capped) => self.netlink_more = true,
            Err(e) => {
                log_error!("netlink recv: {e}");
                self.netlink_more = false;
            }
        }
    }

    // ---- signals and timers --------------------------------------------

    fn read_signals(&mut self) {
        loop {
            match self.signals.read() {
                Ok(Some(Signal::Stop(sig))) => {
                    if self.stopping.is_none() {
                        log_notice!("signal {sig}: finishing the batch in flight, then exiting");
                        self.notifier.stopping();
                        self.stopping = Some((sig, monotonic_ns() + STOP_GRACE.as_nanos() as u64));
                    }
                }
                Ok(Some(Signal::Reload)) => self.reload(),
                Ok(None) => return,
                Err(e) => {
                    log_error!("reading signals: {e}");
                    return;
                }
            }
        }
    }

    fn timers(&mut self, now: u64) {
        for token in [STATE_CONN, APPL_CONN, EVENTS_CONN] {
            self.poll_connect(token, now);
        }
        if now >= self.next_poll_ns {
            let n = self.sync.ports.requery_absent();
            if n > 0 {
                log_debug!("asking APPL_DB again about {n} ports not in PORT_TABLE yet");
            }
            self.next_poll_ns = now + self.cfg.redis.port_table_poll_ms * 1_000_000;
        }
        if !self.retry_ports.is_empty() && now >= self.retry_at_ns {
            for port in std::mem::take(&mut self.retry_ports) {
                self.sync.ports.rewrite(port, now);
            }
        }
        if let Some(interval) = self.notifier.watchdog_interval() {
            if now >= self.next_watchdog_ns {
                self.notifier.watchdog();
                self.next_watchdog_ns = now + interval.as_nanos() as u64;
            }
        }
        if now >= self.next_tick_ns {
            let c = &self.recorder.counters;
            c.known_ports.set(self.sync.ports.len() as u64);
            c.pending_ports.set(self.sync.ports.held() as u64);
            c.dirty_ports.set(self.sync.ports.dirty() as u64);
            c.loop_cpu_ns.set(thread_cpu_ns());
            c.redis_up.set(u64::from(self.state.is_up()));
            self.next_tick_ns = now + TICK_NS;
        }
    }

    // ---- Redis connections ------------------------------------------------

    /// The connection behind a token, for what all connections share.
    fn conn(&mut self, token: Token) -> &mut dyn Connection {
        match token {
            STATE_CONN => &mut self.state,
            APPL_CONN => &mut self.appl,
            _ => &mut self.events,
        }
    }

    fn poll_connect(&mut self, token: Token, now: u64) {
        let step = self.conn(token).poll_connect(now);
        match step {
            ConnectStep::Idle => {}
            ConnectStep::Started { fd, ready } => {
                if let Err(e) = self.reactor.register(fd, token) {
                    log_error!("registering a Redis socket: {e}");
                    self.lose(token, Lost::Io(e));
                    return;
                }
                if ready {
                    self.on_connected(token);
                }
            }
            ConnectStep::Failed(e) => self.report_connect_failure(token, &e),
        }
    }

    fn report_connect_failure(&mut self, token: Token, e: &std::io::Error) {
        let conn = self.conn(token);
        let (role, addr) = (
            conn.role(),
            conn.address().map(|a| a.to_string()).unwrap_or_default(),
        );
        log_warn!("{role}: cannot connect to Redis at {addr}: {e}; retrying");
        self.notifier
            .status(&format!("Redis unreachable at {addr}: {e}; retrying"));
    }

    /// Handle connect completion and errors; `true` if replies should be read.
    fn on_conn_ready(&mut self, token: Token, ev: Readiness) -> bool {
        let connecting = self.conn(token).state() == LinkState::Connecting;
        if connecting {
            if !(ev.writable || ev.error) {
                return false;
            }
            let done = self.conn(token).finish_connect();
            match done {
                Ok(true) => self.on_connected(token),
                Ok(false) => return false,
                Err(Lost::Io(e)) => {
                    self.report_connect_failure(token, &e);
                    self.lose_quiet(token);
                    return false;
                }
                Err(other) => {
                    self.lose(token, other);
                    return false;
                }
            }
        }
        if ev.writable {
            if let Err(e) = self.conn(token).flush() {
                self.lose(token, e);
                return false;
            }
        }
        ev.readable || ev.error
    }

    fn on_connected(&mut self, token: Token) {
        let now = monotonic_ns();
        match token {
            STATE_CONN => {
                let db = self.state_db.to_string();
                self.state.push(StateTag::Select, |out| {
                    encode::command(out, &[b"SELECT", db.as_bytes()])
                });
                if self.state.connects > 1 {
                    self.recorder.counters.redis_reconnects.inc();
                    log_notice!("STATE_DB: reconnected; rewriting the state of every port");
                    self.notifier.status("running");
                }
                // Whatever happened while it was away: write everything.
                self.sync.ports.rewrite_all(now);
            }
            APPL_CONN => {
                let db = self.appl_db.to_string();
                self.appl.push(ApplTag::Select, |out| {
                    encode::command(out, &[b"SELECT", db.as_bytes()])
                });
                self.appl
                    .push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
                for item in &mut self.outbox {
                    item.sent = false;
                }
                if self.appl.connects > 1 {
                    self.recorder.counters.redis_reconnects.inc();
                    log_notice!("APPL_DB: reconnected; asking again which ports PORT_TABLE has");
                    self.sync.ports.relearn_membership();
                }
            }
            _ => {
                let db = self.appl_db.to_string();
                let mut pattern = self.keyspace_prefix.clone();
                pattern.push(b'*');
                let logger = self.logger_live.then_some(&self.logger_channel);
                self.events.push_untagged(|out| {
                    encode::command(out, &[b"SELECT", db.as_bytes()]);
                    encode::command(out, &[b"PSUBSCRIBE", &pattern]);
                    if let Some(channel) = logger {
                        encode::command(out, &[b"SUBSCRIBE", channel]);
                    }
                });
                // A level set while we were not subscribed.
                self.loglevel_wanted = self.logger_live;
                // Changes made while we were not subscribed are found by asking.
                self.sync.ports.requery_absent();
                if self.events.connects > 1 {
                    self.recorder.counters.redis_reconnects.inc();
                }
            }
        }
    }

    fn lose(&mut self, token: Token, why: Lost) {
        let role = self.conn(token).role();
        log_warn!("{role}: Redis connection lost ({why}); reconnecting");
        self.notifier.status(&format!(
            "{role}: Redis connection lost ({why}); reconnecting"
        ));
        self.lose_quiet(token);
    }

    fn lose_quiet(&mut self, token: Token) {
        let now = monotonic_ns();
        if let Some(fd) = self.conn(token).fd() {
            let _ = self.reactor.deregister(fd);
        }
        match token {
            STATE_CONN => {
                self.state.drop_connection(now, drop);
            }
            APPL_CONN => {
                let ports = &mut self.sync.ports;
                self.appl.drop_connection(now, |tag| {
                    if let ApplTag::Exists(port) = tag {
                        // Unanswered: ask again once back.
                        ports.set_membership(port, false);
                    }
                });
            }
            _ => {
                self.events.drop_connection(now, drop);
            }
        }
    }

    fn read_state(&mut self) {
        let recorder = &self.recorder;
        let ports = &self.sync.ports;
        let retry_ports = &mut self.retry_ports;
        let retry_at_ns = &mut self.retry_at_ns;
        let state_prefix = &self.state_prefix;
        let state_selected = &mut self.state_selected;
        let result = self.state.read_replies(|tag, reply| {
            let Some(tag) = tag else { return };
            let now = monotonic_ns();
            let (port, since, what) = match tag {
                StateTag::Select => {
                    match reply.error() {
                        Some(e) => {
                            log_error!("STATE_DB: SELECT failed: {}", String::from_utf8_lossy(e))
                        }
                        None => *state_selected = true,
                    }
                    return;
                }
                StateTag::Hset { port, since_ns } => (port, since_ns, "HSET"),
                StateTag::Del { port, since_ns } => (port, since_ns, "DEL"),
            };
            match reply.error() {
                None => recorder.record(SampleKind::RecvToReply, now.saturating_sub(since)),
                Some(e) => {
                    recorder.counters.redis_error_replies.inc();
                    let name = ports.get(port).name;
                    log_error!(
                        "STATE_DB: {what} {}{name} failed: {}",
                        String::from_utf8_lossy(state_prefix),
                        String::from_utf8_lossy(e)
                    );
                    if RETRY_LATER.iter().any(|code| reply.is_error_code(code)) {
                        if retry_ports.is_empty() {
                            *retry_at_ns = now + RETRY_LATER_MS * 1_000_000;
                        }
                        if !retry_ports.contains(&port) {
                            retry_ports.push(port);
                        }
                    }
                }
            }
        });
        if let Err(e) = result {
            self.lose(STATE_CONN, e);
        }
    }

    fn read_appl(&mut self) {
        let ports = &mut self.sync.ports;
        let outbox = &mut self.outbox;
        let counters = &self.recorder.counters;
        let script_loaded = &mut self.script_loaded;
        let configured_level = self.cfg.log.level.0;
        let mut reload = false;
        let result = self.appl.read_replies(|tag, reply| {
            let Some(tag) = tag else { return };
            match tag {
                ApplTag::Select => {
                    if let Some(e) = reply.error() {
                        log_error!("APPL_DB: SELECT failed: {}", String::from_utf8_lossy(e));
                    }
                }
                ApplTag::ScriptLoad => {
                    // Ready either way: an odd answer is logged, and a
                    // failing EVALSHA will say more.
                    *script_loaded = true;
                    match reply {
                        Reply::Bulk(sha) if *sha == SET_SCRIPT_SHA.as_bytes() => {}
                        other => log_error!(
                            "APPL_DB: SCRIPT LOAD answered {other:?}, expected {SET_SCRIPT_SHA}"
                        ),
                    }
                }
                ApplTag::LogLevel => apply_loglevel(reply, configured_level),
                ApplTag::Exists(port) => match reply {
                    Reply::Int(n) => ports.set_membership(port, *n > 0),
                    other => {
                        counters.redis_error_replies.inc();
                        log_error!(
                            "APPL_DB: EXISTS for {} answered {other:?}",
                            ports.get(port).name
                        );
                        ports.set_membership(port, false);
                    }
                },
                ApplTag::Pst(i) => {
                    let Some(item) = outbox.get_mut(i) else {
                        return;
                    };
                    if reply.is_error_code(b"NOSCRIPT") {
                        // SCRIPT FLUSH (or a restart): load it again and resend.
                        log_warn!(
                            "APPL_DB: NOSCRIPT for {}; loading the script again",
                            String::from_utf8_lossy(&item.set.key)
                        );
                        item.sent = false;
                        reload = true;
                    } else if let Some(e) = reply.error() {
                        counters.redis_error_replies.inc();
                        log_error!(
                            "APPL_DB: EVALSHA set PORT_TABLE {} failed: {}",
                            String::from_utf8_lossy(&item.set.key),
                            String::from_utf8_lossy(e)
                        );
                        if RETRY_LATER.iter().any(|code| reply.is_error_code(code)) {
                            item.sent = false;
                        } else {
                            item.acked = true;
                        }
                    } else {
                        item.acked = true;
                        log_notice!(
                            "APPL_DB: {} written",
                            String::from_utf8_lossy(&item.set.key)
                        );
                    }
                }
            }
        });
        if let Err(e) = result {
            self.lose(APPL_CONN, e);
            return;
        }
        if reload && self.appl.is_up() {
            self.appl
                .push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
        }
    }

    fn read_events(&mut self) {
        let ports = &mut self.sync.ports;
        let prefix = &self.keyspace_prefix;
        let logger_channel = &self.logger_channel;
        let loglevel_wanted = &mut self.loglevel_wanted;
        let result = self.events.read_replies(|_, reply| {
            // ["pmessage", pattern, channel, event] or ["message", channel, event]
            let Reply::Array(items) = reply else { return };
            if items.len() == 3
                && items[0].as_bytes() == Some(b"message")
                && items[1].as_bytes() == Some(logger_channel.as_slice())
            {
                *loglevel_wanted = true;
                return;
            }
            if items.len() != 4 || items[0].as_bytes() != Some(b"pmessage") {
                return;
            }
            let (Some(channel), Some(event)) = (items[2].as_bytes(), items[3].as_bytes()) else {
                return;
            };
            let Some(name) = channel.strip_prefix(prefix.as_slice()) else {
                return;
            };
            let present = match event {
                b"hset" | b"hsetnx" | b"hmset" | b"hincrby" | b"hincrbyfloat" | b"rename_to"
                | b"restore" => true,
                b"del" | b"expired" | b"evicted" | b"rename_from" => false,
                _ => return,
            };
            if present {
                // Learn it even for ports not seen yet: the netdev may follow.
                if let Some(id) = ports.intern(name) {
                    ports.set_membership(id, true);
                }
            } else if let Some(id) = ports.find(name) {
                ports.set_membership(id, false);
            }
        });
        if let Err(e) = result {
            self.lose(EVENTS_CONN, e);
        }
    }

    // ---- writing -------------------------------------------------------------

    /// Encode every port owed into the STATE_DB buffer, as room allows.
    fn write_ports(&mut self) {
        if self.state.is_up() {
            encode_port_writes(
                &mut self.sync.ports,
                &mut self.state,
                &self.state_prefix,
                &self.recorder,
                &mut self.written_since,
            );
        }
    }

    /// Membership queries and `PortInitDone`.
    fn write_appl(&mut self) {
        if !self.appl.is_up() {
            return;
        }
        self.sync.ports.take_queries(&mut self.queries);
        for &port in &self.queries {
            let name = self.sync.ports.get(port).name;
            let prefix = &self.appl_prefix;
            self.appl.push(ApplTag::Exists(port), |out| {
                let mut key = [0u8; 64];
                let n = prefix.len() + name.as_bytes().len();
                key[..prefix.len()].copy_from_slice(prefix);
                key[prefix.len()..n].copy_from_slice(name.as_bytes());
                encode::command(out, &[b"EXISTS", &key[..n]])
            });
        }
        if self.loglevel_wanted {
            self.loglevel_wanted = false;
            let (config_db, appl_db) = (self.config_db.to_string(), self.appl_db.to_string());
            let key = &self.logger_key;
            self.appl.push(ApplTag::Select, |out| {
                encode::command(out, &[b"SELECT", config_db.as_bytes()])
            });
            self.appl.push(ApplTag::LogLevel, |out| {
                encode::command(out, &[b"HGET", key, b"LOGLEVEL"])
            });
            self.appl.push(ApplTag::Select, |out| {
                encode::command(out, &[b"SELECT", appl_db.as_bytes()])
            });
        }
        if !self.init_done_queued && self.sync.ports.awaiting_init() == 0 {
            self.init_done_queued = true;
            self.outbox.push(OutboxItem {
                set: PstSet::new("PortInitDone", &[("lanes", "0")]),
                acked: false,
                sent: false,
            });
        }
        for (i, item) in self.outbox.iter_mut().enumerate() {
            if !item.acked && !item.sent {
                item.sent = true;
                let producer = &self.producer;
                self.appl
                    .push(ApplTag::Pst(i), |out| item.set.encode(producer, out));
            }
        }
    }

    fn flush_all(&mut self) {
        match self.state.flush() {
            Ok(_) => {
                if !self.written_since.is_empty() {
                    let now = monotonic_ns();
                    for &since in &self.written_since {
                        self.recorder
                            .record(SampleKind::RecvToWrite, now.saturating_sub(since));
                    }
                    self.written_since.clear();
                }
            }
            Err(e) => self.lose(STATE_CONN, e),
        }
        if let Err(e) = self.appl.flush() {
            self.lose(APPL_CONN, e);
        }
        if let Err(e) = self.events.flush() {
            self.lose(EVENTS_CONN, e);
        }
    }
}
