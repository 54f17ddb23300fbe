//! The STATE_DB session: every port the table says is owed goes out as
//! `DEL`/`HSET PORT_TABLE|<name>`, one pipelined batch per loop turn, and
//! each reply is matched to the port it was for.

use crate::engine::event_loop::LoopIo;
use crate::engine::metrics::{Recorder, SampleKind};
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::{Reply, Verdict};
use crate::engine::redis::session::{self, Session};
use crate::engine::sys::monotonic_ns;
use crate::port::keys::PortKeys;
use crate::port::session::PortWork;
use crate::port::table::{PortId, PortTable};
use crate::{log_error, log_notice};

/// Delay before writing again after a retry-later error.
const RETRY_LATER_MS: u64 = 100;

/// What a STATE_DB command in flight is.
#[derive(Debug, Clone, Copy)]
pub enum StateTag {
    Select,
    Hset { port: PortId, since_ns: u64 },
    Del { port: PortId, since_ns: u64 },
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

/// What the STATE_DB replies decide, apart from the connection: pure, so
/// it is tested without sockets.
#[derive(Debug, Default)]
pub struct StateReplies {
    /// `SELECT` acknowledged on the current connection.
    pub selected: bool,
    /// Ports whose write got a retry-later error, and when to retry.
    pub retry_ports: Vec<PortId>,
    pub retry_at_ns: u64,
}

impl StateReplies {
    /// Handle the reply to `tag`, received at `now`.
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
        };
        let Some(e) = reply.error() else {
            recorder.record(SampleKind::RecvToReply, now.saturating_sub(since));
            return;
        };
        recorder.counters.redis_error_replies.inc();
        log_error!(
            "STATE_DB: {what} {}{} failed: {}",
            String::from_utf8_lossy(prefix),
            ports.get(port).name,
            String::from_utf8_lossy(e)
        );
        if reply.verdict() == Verdict::RetryLater {
            if self.retry_ports.is_empty() {
                self.retry_at_ns = now + RETRY_LATER_MS * 1_000_000;
            }
            if !self.retry_ports.contains(&port) {
                self.retry_ports.push(port);
            }
        }
    }

    /// Ports whose retry is due at `now` owe their write again.
    pub fn retry_due(&mut self, ports: &mut PortTable, now: u64) {
        if !self.retry_ports.is_empty() && now >= self.retry_at_ns {
            for port in self.retry_ports.drain(..) {
                ports.rewrite(port, now);
            }
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
            let now = monotonic_ns();
            for &since in &self.written_since {
                io.recorder
                    .record(SampleKind::RecvToWrite, now.saturating_sub(since));
            }
        }
        self.written_since.clear();
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
            log_notice!("STATE_DB: reconnected; rewriting the state of every port");
            io.notifier.status("running");
        }
        // Whatever happened while it was away: write everything.
        work.sync.ports.rewrite_all(monotonic_ns());
    }

    fn read(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let (replies, ports, prefix) =
            (&mut self.replies, &work.sync.ports, &self.keys.state_prefix);
        self.conn.read_replies(|tag, reply| {
            if let Some(tag) = tag {
                replies.on_reply(tag, reply, ports, prefix, io.recorder, monotonic_ns());
            }
        })
    }

    fn drop_connection(&mut self, _work: &mut PortWork, now_ns: u64) {
        self.replies.selected = false;
        self.conn.drop_connection(now_ns, drop);
    }
}
