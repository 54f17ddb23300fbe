//! The APPL_DB session: which ports APPL_DB `PORT_TABLE` has (an `EXISTS`
//! per port the table asks about), `PortInitDone` through the
//! ProducerStateTable once every configured port is seen, and CONFIG_DB's
//! `LOGGER|portsyncd` log settings when it lives on the same instance.

use crate::engine::event_loop::LoopIo;
use crate::engine::metrics::Counters;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::{Reply, Verdict};
use crate::engine::redis::session::{self, Session};
use crate::engine::runtime::repeat::{cut, Repeats, Say};
use crate::engine::sonic::logger::{self, LoggerFollow, RunLog};
use crate::engine::sonic::pst::{ProducerTable, PstSet, SET_SCRIPT_SHA};
use crate::engine::sys::monotonic_ns;
use crate::port::keys::{PortKey, PortKeys};
use crate::port::session::PortWork;
use crate::port::table::{PortId, PortTable};
use crate::{log_error, log_notice, log_warn};

/// The wait before sending a refused set again: doubling from the first to
/// the last while errors go on.
const RESEND_FIRST_NS: u64 = 100_000_000;
const RESEND_MAX_NS: u64 = 5_000_000_000;
/// Bytes of a Redis error quoted in a log line.
const MAX_QUOTE: usize = 200;

/// What an APPL_DB command in flight is.
#[derive(Debug, Clone, Copy)]
pub enum ApplTag {
    Select,
    ScriptLoad,
    /// Index into the ProducerStateTable outbox.
    Pst(usize),
    Exists(PortId),
    /// Self-verification: does APPL_DB `PORT_TABLE` still have this port
    /// (one it writes)? Noticed even with keyspace notifications off.
    Recheck(PortId),
    /// `HMGET LOGGER|portsyncd LOGLEVEL LOGOUTPUT` in CONFIG_DB (between
    /// two SELECTs).
    Logger,
}

/// A ProducerStateTable set owed to APPL_DB (`PortInitDone`).
#[derive(Debug)]
pub struct OutboxItem {
    pub set: PstSet,
    pub acked: bool,
    pub sent: bool,
}

/// What the APPL_DB replies decide, apart from the connection: pure, so it
/// is tested without sockets.
#[derive(Debug)]
pub struct ApplReplies {
    /// The ProducerStateTable script was loaded (answered) once.
    pub script_loaded: bool,
    /// A `NOSCRIPT` came back: load the script again.
    pub reload_script: bool,
    pub outbox: Vec<OutboxItem>,
    /// Sets refused with an error are sent again at this time.
    pub resend_at_ns: u64,
    /// The wait before the next resend: doubling while errors go on.
    backoff_ns: u64,
    /// Error replies logged once per kind, the repeats counted.
    errors: Repeats,
    /// CONFIG_DB's log settings as last read, and the run's own.
    pub logger: LoggerFollow,
}

impl Default for ApplReplies {
    fn default() -> Self {
        ApplReplies {
            logger: LoggerFollow::new(RunLog {
                level: crate::engine::runtime::log::Level::Notice,
                output: crate::engine::runtime::log::Output::Stderr,
            }),
            script_loaded: false,
            reload_script: false,
            outbox: Vec::new(),
            resend_at_ns: 0,
            backoff_ns: RESEND_FIRST_NS,
            errors: Repeats::default(),
        }
    }
}

impl ApplReplies {
    /// Handle the reply to `tag`, received at `now`.
    pub fn on_reply(
        &mut self,
        tag: ApplTag,
        reply: &Reply<'_>,
        ports: &mut PortTable,
        keys: &PortKeys,
        counters: &Counters,
        now: u64,
    ) {
        match tag {
            ApplTag::Select => {
                if let Some(e) = reply.error() {
                    log_error!("APPL_DB: SELECT failed: {}", String::from_utf8_lossy(e));
                }
            }
            ApplTag::ScriptLoad => {
                // Ready either way: an odd answer is logged, and a failing
                // EVALSHA will say more.
                self.script_loaded = true;
                match reply {
                    Reply::Bulk(sha) if *sha == SET_SCRIPT_SHA.as_bytes() => {}
                    other => log_error!(
                        "APPL_DB: SCRIPT LOAD answered {other:?}, expected {SET_SCRIPT_SHA}"
                    ),
                }
            }
            ApplTag::Logger => match reply {
                Reply::Array(items) if items.len() == 2 => {
                    let field = |r: &Reply<'_>| match r {
                        Reply::Bulk(v) => Some(v.to_vec()),
                        _ => None,
                    };
                    let (level, output) = (field(&items[0]), field(&items[1]));
                    let moves = self.logger.on_read(level.as_deref(), output.as_deref());
                    logger::apply(&keys.logger, moves, "configuration");
                }
                other => log_warn!(
                    "CONFIG_DB: HMGET {} LOGLEVEL LOGOUTPUT answered {}",
                    keys.logger.name(),
                    cut(&format!("{other:?}"), MAX_QUOTE)
                ),
            },
            ApplTag::Exists(port) => self.on_exists(port, reply, ports, counters, now),
            ApplTag::Pst(i) => self.on_pst_reply(i, reply, counters, now),
            ApplTag::Recheck(port) => {
                if let Reply::Int(0) = reply {
                    log_notice!(
                        "APPL_DB PORT_TABLE no longer has {}: its state is no longer written",
                        ports.get(port).name
                    );
                    ports.set_membership(port, false);
                }
            }
        }
    }

    /// Whether APPL_DB `PORT_TABLE` has `port`. Anything but a number is
    /// counted and taken as "not yet": the poll asks again.
    fn on_exists(
        &mut self,
        port: PortId,
        reply: &Reply<'_>,
        ports: &mut PortTable,
        counters: &Counters,
        now: u64,
    ) {
        if let Reply::Int(n) = reply {
            return ports.set_membership(port, *n > 0);
        }
        counters.redis_error_replies.inc();
        let kind = String::from_utf8_lossy(reply.error_code().unwrap_or(b"unexpected"));
        if self.errors.note(&format!("EXISTS {kind}"), now) == Say::First {
            log_error!(
                "APPL_DB: EXISTS for {} answered {}; asked again",
                ports.get(port).name,
                cut(&format!("{reply:?}"), MAX_QUOTE)
            );
        }
        ports.set_membership(port, false);
    }

    /// A ProducerStateTable set is done only when Redis acknowledged it:
    /// an error reply (OOM, MISCONF, READONLY, anything) sends it again
    /// after a backoff, `NOSCRIPT` after loading the script again.
    fn on_pst_reply(&mut self, i: usize, reply: &Reply<'_>, counters: &Counters, now: u64) {
        let Some(item) = self.outbox.get_mut(i) else {
            return;
        };
        let key = String::from_utf8_lossy(&item.set.key);
        match reply.verdict() {
            Verdict::Done => {
                item.acked = true;
                self.backoff_ns = RESEND_FIRST_NS;
                log_notice!("APPL_DB: {key} written");
            }
            Verdict::NoScript => {
                // SCRIPT FLUSH (or a restart): load it again and resend.
                log_warn!("APPL_DB: NOSCRIPT for {key}; loading the script again");
                item.sent = false;
                self.reload_script = true;
            }
            Verdict::RetryLater | Verdict::Failed => {
                counters.redis_error_replies.inc();
                item.sent = false;
                let text = String::from_utf8_lossy(reply.error().unwrap_or_default());
                let code = String::from_utf8_lossy(reply.error_code().unwrap_or_default());
                if self.errors.note(&format!("EVALSHA {code}"), now) == Say::First {
                    log_error!(
                        "APPL_DB: EVALSHA set PORT_TABLE {key} failed: {}; sent again in {} ms",
                        cut(&text, MAX_QUOTE),
                        self.backoff_ns / 1_000_000
                    );
                }
                self.resend_at_ns = now + self.backoff_ns;
                self.backoff_ns = (self.backoff_ns * 2).min(RESEND_MAX_NS);
            }
        }
    }

    /// Repeated errors summed up.
    fn on_timer(&mut self, now: u64) {
        for (kind, n) in self.errors.due(now) {
            log_error!("APPL_DB: {n} more {kind} error replies (each set is sent again)");
        }
    }
}

/// The APPL_DB connection and its conversation.
pub struct ApplSession {
    pub conn: RedisConn<ApplTag>,
    pub replies: ApplReplies,
    keys: PortKeys,
    init_done_queued: bool,
    /// Scratch: ports to ask APPL_DB about this turn.
    queries: Vec<PortId>,
}

impl ApplSession {
    pub fn new(conn: RedisConn<ApplTag>, keys: PortKeys, logger: LoggerFollow) -> ApplSession {
        ApplSession {
            conn,
            replies: ApplReplies {
                logger,
                ..ApplReplies::default()
            },
            keys,
            init_done_queued: false,
            queries: Vec::with_capacity(256),
        }
    }

    /// Resends due, and repeated errors summed up.
    pub fn on_timer(&mut self, now: u64) {
        self.replies.on_timer(now);
    }

    /// When a refused set is sent again, if one waits.
    pub fn next_resend(&self) -> Option<u64> {
        let waiting = self.replies.outbox.iter().any(|i| !i.acked && !i.sent);
        (waiting && self.replies.resend_at_ns > 0).then_some(self.replies.resend_at_ns)
    }

    /// SIGHUP: the run's new log settings, applied where CONFIG_DB holds
    /// no choice of its own.
    pub fn reload_log(&mut self, run: RunLog) {
        let moves = self.replies.logger.set_run(run);
        logger::apply(&self.keys.logger, moves, "SIGHUP");
    }

    /// Queue membership queries, a read of the log settings, `PortInitDone` when due,
    /// and send.
    pub fn write(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        if self.conn.is_up() {
            self.queue(work);
        }
        session::flush(self, work, io);
    }

    fn queue(&mut self, work: &mut PortWork) {
        let ports = &mut work.sync.ports;
        ports.take_queries(&mut self.queries);
        let prefix = &self.keys.appl_prefix;
        for &port in &self.queries {
            let key = PortKey::new(prefix, &ports.get(port).name);
            self.conn.push(ApplTag::Exists(port), |out| {
                encode::command(out, &[b"EXISTS", key.as_bytes()])
            });
        }
        if work.logger_wanted {
            work.logger_wanted = false;
            self.queue_logger_read();
        }
        if self.replies.reload_script {
            self.replies.reload_script = false;
            self.conn
                .push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
        }
        if !self.init_done_queued && ports.awaiting_init() == 0 {
            self.init_done_queued = true;
            self.replies.outbox.push(OutboxItem {
                set: PstSet::new("PortInitDone", &[("lanes", "0")]),
                acked: false,
                sent: false,
            });
        }
        if self.replies.resend_at_ns != 0 && monotonic_ns() < self.replies.resend_at_ns {
            return;
        }
        let producer = &self.keys.producer;
        for (i, item) in self.replies.outbox.iter_mut().enumerate() {
            if !item.acked && !item.sent {
                item.sent = true;
                self.conn
                    .push(ApplTag::Pst(i), |out| item.set.encode(producer, out));
            }
        }
    }

    /// Self-verification: ask APPL_DB again about every port written.
    pub fn queue_recheck(&mut self, ports: &PortTable) {
        let prefix = &self.keys.appl_prefix;
        for (port, _) in ports.verifiable() {
            let key = PortKey::new(prefix, &ports.get(port).name);
            self.conn.push(ApplTag::Recheck(port), |out| {
                encode::command(out, &[b"EXISTS", key.as_bytes()])
            });
        }
    }

    /// `HMGET LOGGER|portsyncd LOGLEVEL LOGOUTPUT` in CONFIG_DB, on this
    /// connection.
    fn queue_logger_read(&mut self) {
        let config_db = self.keys.logger.config_db.to_string();
        let appl_db = self.keys.appl_db.as_bytes();
        let key = &self.keys.logger.key;
        self.conn.push(ApplTag::Select, |out| {
            encode::command(out, &[b"SELECT", config_db.as_bytes()])
        });
        self.conn.push(ApplTag::Logger, |out| {
            encode::command(out, &[b"HMGET", key, b"LOGLEVEL", b"LOGOUTPUT"])
        });
        self.conn.push(ApplTag::Select, |out| {
            encode::command(out, &[b"SELECT", appl_db])
        });
    }
}

impl Session for ApplSession {
    type Work = PortWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        let db = self.keys.appl_db.as_bytes();
        self.conn.push(ApplTag::Select, |out| {
            encode::command(out, &[b"SELECT", db])
        });
        self.conn
            .push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
        self.replies.reload_script = false;
        for item in &mut self.replies.outbox {
            item.sent = false;
        }
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
            log_notice!("APPL_DB: reconnected; asking again which ports PORT_TABLE has");
            work.sync.ports.relearn_membership();
        }
    }

    fn read(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let (replies, keys) = (&mut self.replies, &self.keys);
        let ports = &mut work.sync.ports;
        let counters = &*io.recorder.counters;
        self.conn.read_replies(io.reactor, |tag, reply, now| {
            if let Some(tag) = tag {
                replies.on_reply(tag, reply, ports, keys, counters, now);
            }
        })
    }

    fn drop_connection(&mut self, work: &mut PortWork, now_ns: u64) {
        let ports = &mut work.sync.ports;
        self.conn.drop_connection(now_ns, |tag| {
            if let ApplTag::Exists(port) = tag {
                // Unanswered: ask again once back.
                ports.set_membership(port, false);
            }
        });
    }
}
