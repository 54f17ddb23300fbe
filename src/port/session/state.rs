//! The STATE_DB session: every port the table says is owed goes out as
//! `DEL`/`HSET PORT_TABLE|<name>`, one pipelined batch per loop turn, and
//! each reply is matched to the port it was for.

use crate::engine::event_loop::LoopIo;
use crate::engine::metrics::{Recorder, SampleKind};
use crate::engine::probes;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::redis::session::{self, Session};
use crate::engine::runtime::repeat::{cut, Repeats, Say};
use crate::engine::sys::monotonic_ns;
use crate::port::keys::{PortKey, PortKeys};
use crate::port::rules::LinkStatus;
use crate::port::session::PortWork;
use crate::port::table::{PortId, PortName, PortTable};
use crate::port::verify::Field;
use crate::{log_error, log_notice};

/// The wait before writing again after an error reply: doubling from the
/// first to the last while errors go on.
const RETRY_FIRST_NS: u64 = 100_000_000;
const RETRY_MAX_NS: u64 = 5_000_000_000;
/// Bytes of a Redis error quoted in a log line.
const MAX_QUOTE: usize = 200;

/// What a STATE_DB command in flight is.
#[derive(Debug, Clone, Copy)]
pub enum StateTag {
    Select,
    Hset {
        port: PortId,
        since_ns: u64,
    },
    Del {
        port: PortId,
        since_ns: u64,
    },
    /// Self-verification: `KEYS PORT_TABLE|*`.
    VerifyKeys,
    /// Self-verification: `HMGET` of a port's four fields, read back while
    /// the table said `expected`.
    VerifyFields {
        port: PortId,
        expected: LinkStatus,
    },
    /// Self-verification: `HDEL` of the four fields of an entry with no
    /// netdev behind it (a failure is found again by the next run).
    VerifyRemove,
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
        recorder.note_written(written_since, w.since_ns);
    }
    recorder.batch_encoded(commands);
    commands
}

/// What the STATE_DB replies decide, apart from the connection: pure, so
/// it is tested without sockets.
#[derive(Debug)]
pub struct StateReplies {
    /// `SELECT` acknowledged on the current connection.
    pub selected: bool,
    /// Ports whose write got an error reply, and when to write them again.
    pub retry_ports: Vec<PortId>,
    pub retry_at_ns: u64,
    /// The wait before the next retry: doubling while errors go on.
    backoff_ns: u64,
    /// Error replies logged once per kind, the repeats counted.
    errors: Repeats,
}

impl Default for StateReplies {
    fn default() -> Self {
        StateReplies {
            selected: false,
            retry_ports: Vec::new(),
            retry_at_ns: 0,
            backoff_ns: RETRY_FIRST_NS,
            errors: Repeats::default(),
        }
    }
}

impl StateReplies {
    /// Handle the reply to `tag`, received at `now`. A write answered with
    /// an error (whatever the error: OOM, MISCONF, READONLY, BUSY, …) stays
    /// owed and is written again after a backoff: Redis cannot lose state
    /// by refusing it once.
    pub fn on_reply(
        &mut self,
        tag: StateTag,
        reply: &Reply<'_>,
        ports: &PortTable,
        prefix: &[u8],
        recorder: &Recorder,
        now: u64,
    ) {
        let (port, since, what) = match tag {
            StateTag::Select => {
                match reply.error() {
                    Some(e) => {
                        log_error!("STATE_DB: SELECT failed: {}", String::from_utf8_lossy(e))
                    }
                    None => self.selected = true,
                }
                return;
            }
            StateTag::Hset { port, since_ns } => (port, since_ns, "HSET"),
            StateTag::Del { port, since_ns } => (port, since_ns, "DEL"),
            StateTag::VerifyKeys | StateTag::VerifyFields { .. } | StateTag::VerifyRemove => return,
        };
        let Some(e) = reply.error() else {
            self.backoff_ns = RETRY_FIRST_NS;
            recorder.record(SampleKind::RecvToReply, now.saturating_sub(since));
            probes::port_acked(|| ports.get(port).ifindex, since, now);
            return;
        };
        recorder.counters.redis_error_replies.inc();
        let text = String::from_utf8_lossy(e);
        let code = String::from_utf8_lossy(reply.error_code().unwrap_or_default());
        if self.errors.note(&format!("{what} {code}"), now) == Say::First {
            log_error!(
                "STATE_DB: {what} {}{} failed: {}; written again in {} ms (repeats of this error are counted, not logged)",
                String::from_utf8_lossy(prefix),
                ports.get(port).name,
                cut(&text, MAX_QUOTE),
                self.backoff_ns / 1_000_000
            );
        }
        if self.retry_ports.is_empty() {
            self.retry_at_ns = now + self.backoff_ns;
            self.backoff_ns = (self.backoff_ns * 2).min(RETRY_MAX_NS);
        }
        if !self.retry_ports.contains(&port) {
            self.retry_ports.push(port);
        }
    }

    /// Ports whose retry is due at `now` owe their write again; repeated
    /// errors are summed up.
    pub fn on_timer(&mut self, ports: &mut PortTable, now: u64) {
        if !self.retry_ports.is_empty() && now >= self.retry_at_ns {
            for port in self.retry_ports.drain(..) {
                ports.rewrite(port, now);
            }
        }
        for (kind, n) in self.errors.due(now) {
            log_error!("STATE_DB: {n} more {kind} error replies (each write stays owed)");
        }
    }

    /// When the next retry is due, if any.
    pub fn next_retry(&self) -> Option<u64> {
        (!self.retry_ports.is_empty()).then_some(self.retry_at_ns)
    }
}

/// The STATE_DB connection and its conversation.
pub struct StateSession {
    pub conn: RedisConn<StateTag>,
    pub replies: StateReplies,
    keys: PortKeys,
    /// Receive stamps of the ports in the batch being sent (scratch).
    written_since: Vec<u64>,
}

impl StateSession {
    pub fn new(conn: RedisConn<StateTag>, keys: PortKeys) -> StateSession {
        StateSession {
            conn,
            replies: StateReplies::default(),
            keys,
            written_since: Vec::with_capacity(1024),
        }
    }

    /// Encode every port owed into the buffer, as room allows, and send it;
    /// once sent, each port's receive → write latency is recorded.
    pub fn write(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        if self.conn.is_up() {
            encode_port_writes(
                &mut work.sync.ports,
                &mut self.conn,
                &self.keys.state_prefix,
                io.recorder,
                &mut self.written_since,
            );
        }
        if session::flush(self, work, io) {
            io.recorder
                .record_written(&self.written_since, monotonic_ns());
        }
        self.written_since.clear();
    }

    /// Queue self-verification's read-back: `KEYS PORT_TABLE|*` and an
    /// `HMGET` of the four fields of every port it owns. Returns the
    /// commands queued (0 when the buffer has no room: tried next time).
    pub fn queue_verify(&mut self, ports: &PortTable) -> usize {
        const HMGET_MAX: usize = 128;
        let prefix = &self.keys.state_prefix;
        let count = ports.verifiable().count();
        if !self.conn.is_up() || self.conn.room() < (count + 1) * HMGET_MAX {
            return 0;
        }
        let mut pattern = prefix.clone();
        pattern.push(b'*');
        self.conn.push(StateTag::VerifyKeys, |out| {
            encode::command(out, &[b"KEYS", &pattern])
        });
        for (port, expected) in ports.verifiable() {
            let key = PortKey::new(prefix, &ports.get(port).name);
            self.conn
                .push(StateTag::VerifyFields { port, expected }, |out| {
                    let [a, b, c, d] = Field::ALL.map(|f| f.name().as_bytes());
                    encode::command(out, &[b"HMGET", key.as_bytes(), a, b, c, d])
                });
        }
        count + 1
    }

    /// Remove our four fields from the stale entries self-verification
    /// found (`HDEL`: other writers' fields stay).
    pub fn queue_remove(&mut self, names: &[PortName]) {
        if !self.conn.is_up() {
            return;
        }
        let prefix = &self.keys.state_prefix;
        for name in names {
            let key = PortKey::new(prefix, name);
            self.conn.push(StateTag::VerifyRemove, |out| {
                let [a, b, c, d] = Field::ALL.map(|f| f.name().as_bytes());
                encode::command(out, &[b"HDEL", key.as_bytes(), a, b, c, d])
            });
        }
    }

    /// Writes not yet acknowledged or not yet sent; `None` while down.
    pub fn unsettled(&self, ports: &PortTable) -> Option<usize> {
        self.conn
            .is_up()
            .then(|| self.conn.in_flight() + self.conn.unsent() + ports.dirty())
    }
}

impl Session for StateSession {
    type Work = PortWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        let db = self.keys.state_db.as_bytes();
        self.conn.push(StateTag::Select, |out| {
            encode::command(out, &[b"SELECT", db])
        });
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
            log_notice!("STATE_DB: reconnected; rewriting every port APPL_DB PORT_TABLE still has");
            io.notifier.status("running");
            // Redis may have come back empty: which ports APPL_DB has is
            // asked again first, and each port's HSET follows its answer
            // (deletes are owed at once).
            work.sync.ports.relearn_membership();
        }
        // Whatever happened while it was away: write everything.
        work.sync.ports.rewrite_all(monotonic_ns());
    }

    fn read(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let (replies, prefix) = (&mut self.replies, &self.keys.state_prefix);
        let counters = &*io.recorder.counters;
        self.conn.read_replies(io.reactor, |tag, reply, now| {
            let (check, ports) = (&mut work.selfcheck, &mut work.sync.ports);
            match tag {
                Some(StateTag::VerifyKeys) => check.on_keys(prefix, reply, ports, counters, now),
                Some(StateTag::VerifyFields { port, expected }) => {
                    check.on_fields(port, expected, reply, ports, counters, now)
                }
                Some(tag) => replies.on_reply(tag, reply, ports, prefix, io.recorder, now),
                None => {}
            }
        })
    }

    fn drop_connection(&mut self, work: &mut PortWork, now_ns: u64) {
        self.replies.selected = false;
        let check = &mut work.selfcheck;
        self.conn.drop_connection(now_ns, |tag| {
            if matches!(tag, StateTag::VerifyKeys | StateTag::VerifyFields { .. }) {
                check.abandon(now_ns);
            }
        });
    }
}
