//! The APPL_DB session: every neighbor the table says is owed goes out as
//! SONiC's ProducerStateTable set or del script on `NEIGH_TABLE`, one
//! pipelined batch per loop turn (old names' deletes first), each reply
//! matched to the neighbor it was for. It also carries warm restart's
//! reconciliation and its `state` = `reconciled`.

use std::collections::VecDeque;

use crate::engine::event_loop::LoopIo;
use crate::engine::metrics::{Recorder, SampleKind};
use crate::engine::probes;
use crate::engine::redis::client::Client;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::redis::session::{self, Session};
use crate::engine::runtime::repeat::{cut, Repeats, Say};
use crate::engine::sonic::dbconfig::Database;
use crate::engine::sonic::pst::{ProducerTable, DEL_SCRIPT_SHA, SET_SCRIPT_SHA};
use crate::engine::sys::monotonic_ns;
use crate::neigh::keys::NeighKeys;
use crate::neigh::links::{IfName, LinkNames};
use crate::neigh::rules::{family_text, ip_text};
use crate::neigh::selfcheck::NextRead;
use crate::neigh::session::NeighWork;
use crate::neigh::table::{NeighKey, NeighTable, Op, Slot};
use crate::neigh::text;
use crate::neigh::warm::WarmOp;
use crate::{log_error, log_notice};

/// The wait before writing again after an error reply: doubling from the
/// first to the last while errors go on.
const RETRY_FIRST_NS: u64 = 100_000_000;
const RETRY_MAX_NS: u64 = 5_000_000_000;
/// Bytes of a Redis error quoted in a log line.
const MAX_QUOTE: usize = 200;
/// Upper bound of one encoded neighbor command (two keys of at most 15 +
/// 1 + 45 bytes, the table's names, a MAC): checked against the room.
const MAX_COMMAND_BYTES: usize = 512;

/// What an APPL_DB command in flight is.
#[derive(Debug, Clone)]
pub enum ApplTag {
    Select,
    ScriptLoad,
    /// A neighbor's write (its `generation`) under `name`.
    Entry {
        slot: Slot,
        generation: u32,
        name: IfName,
        since_ns: u64,
    },
    /// A delete under a name no longer current.
    Stale {
        key: NeighKey,
        name: IfName,
    },
    /// One command of warm restart's reconciliation.
    Warm(WarmOp),
    /// `SELECT` around the `state` write in STATE_DB.
    StateSelect,
    /// `HSET WARM_RESTART_TABLE|neighsyncd state reconciled`.
    WarmState,
    /// Self-verification: `SCARD NEIGH_TABLE_KEY_SET`.
    VerifyCount,
    /// Self-verification: `SMEMBERS NEIGH_TABLE_KEY_SET`.
    VerifyPending,
    /// Self-verification: one `SCAN` step over `NEIGH_TABLE:*`.
    VerifyKeys,
    /// Self-verification: `HMGET` of the entry in `slot` at `generation`.
    VerifyEntry {
        slot: Slot,
        generation: u32,
    },
}

/// A command to send again after an error reply.
#[derive(Debug, Clone)]
enum Retry {
    Entry {
        slot: Slot,
        generation: u32,
        name: IfName,
    },
    Stale(NeighKey, IfName),
    Warm(WarmOp),
    WarmState,
}

/// What the APPL_DB replies decide, apart from the connection: pure, so
/// it is tested without sockets. Any error reply (OOM, MISCONF, READONLY,
/// NOSCRIPT…) keeps the write owed; it is sent again after a backoff.
#[derive(Debug)]
pub struct ApplReplies {
    /// The scripts' `SCRIPT LOAD` was answered on this connection.
    pub scripts_loaded: bool,
    /// `NOSCRIPT` came back: load them again.
    pub reload_scripts: bool,
    retries: Vec<Retry>,
    retry_at_ns: u64,
    backoff_ns: u64,
    errors: Repeats,
}

impl Default for ApplReplies {
    fn default() -> Self {
        ApplReplies {
            scripts_loaded: false,
            reload_scripts: false,
            retries: Vec::new(),
            retry_at_ns: 0,
            backoff_ns: RETRY_FIRST_NS,
            errors: Repeats::default(),
        }
    }
}

/// The APPL_DB connection and its conversation.
pub struct ApplSession {
    pub conn: RedisConn<ApplTag>,
    pub replies: ApplReplies,
    keys: NeighKeys,
    /// Where STATE_DB is, for the `state` write when it is elsewhere.
    state_db: Database,
    /// Commands by text key, owed: warm restart's reconciliation, and
    /// self-verification's deletes of entries no neighbor stands for.
    pub text_ops: VecDeque<WarmOp>,
    /// `state` = `reconciled` owed (after the reconciliation's commands).
    pub warm_state_owed: bool,
    /// Receive stamps of the neighbors in the batch being sent (scratch).
    written_since: Vec<u64>,
}

impl ApplSession {
    pub fn new(conn: RedisConn<ApplTag>, keys: NeighKeys, state_db: Database) -> ApplSession {
        ApplSession {
            conn,
            replies: ApplReplies::default(),
            keys,
            state_db,
            text_ops: VecDeque::new(),
            warm_state_owed: false,
            written_since: Vec::with_capacity(4096),
        }
    }

    /// Encode what is owed into the buffer, as room allows, and send it;
    /// once sent, each neighbor's receive → write latency is recorded.
    pub fn write(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        if self.conn.is_up() {
            if self.replies.reload_scripts {
                self.replies.reload_scripts = false;
                self.load_scripts();
            }
            self.encode_warm();
            self.encode_verify(work, io.recorder);
            let sync = &mut work.sync;
            encode_neighbor_writes(
                &mut sync.table,
                &sync.links,
                &mut self.conn,
                &self.keys.producer,
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

    fn load_scripts(&mut self) {
        self.conn
            .push(ApplTag::ScriptLoad, ProducerTable::encode_script_load);
        self.conn
            .push(ApplTag::ScriptLoad, ProducerTable::encode_del_script_load);
    }

    /// Warm restart's reconciliation, then its `state` write.
    fn encode_warm(&mut self) {
        let table = &self.keys.producer;
        while self.conn.room() >= MAX_COMMAND_BYTES + 256 {
            let Some(op) = self.text_ops.pop_front() else {
                break;
            };
            self.conn.push(ApplTag::Warm(op.clone()), |out| match &op {
                WarmOp::Set { key, mac, family } => {
                    table.encode_set(out, key, &[(b"neigh", mac), (b"family", family.as_bytes())])
                }
                WarmOp::Del { key } => table.encode_del(out, key),
            });
        }
        if !self.warm_state_owed || !self.text_ops.is_empty() {
            return;
        }
        self.warm_state_owed = false;
        let k = &self.keys;
        let args: [&[u8]; 4] = [b"HSET", k.warm.table.as_bytes(), b"state", b"reconciled"];
        if k.state_with_appl {
            let (state_db, appl_db) = (k.state_db.as_bytes(), k.appl_db.as_bytes());
            self.conn.push(ApplTag::StateSelect, |out| {
                encode::command(out, &[b"SELECT", state_db])
            });
            self.conn
                .push(ApplTag::WarmState, |out| encode::command(out, &args));
            self.conn.push(ApplTag::StateSelect, |out| {
                encode::command(out, &[b"SELECT", appl_db])
            });
        } else {
            // STATE_DB on another instance: one blocking call, off the loop.
            let db = self.state_db.clone();
            let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
            std::thread::spawn(move || {
                let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                let result = Client::connect_db(
                    &db.instance.address(),
                    db.id,
                    std::time::Duration::from_secs(5),
                )
                .and_then(|mut c| c.call_ok(&argv));
                match result {
                    Ok(_) => log_notice!("warm restart: state reconciled"),
                    Err(e) => log_error!("warm restart: writing state reconciled: {e}"),
                }
            });
        }
    }

    /// Queue self-verification's first read: how many keys are in
    /// transit. Returns how many reads (0 while down).
    pub fn queue_verify(&mut self) -> usize {
        if !self.conn.is_up() {
            return 0;
        }
        let key_set = self.keys.producer.key_set();
        self.conn.push(ApplTag::VerifyCount, |out| {
            encode::command(out, &[b"SCARD", key_set])
        });
        1
    }

    /// Self-verification's read-back of entries, as room allows.
    fn encode_verify(&mut self, work: &mut NeighWork, recorder: &Recorder) {
        const HMGET_MAX: usize = 160;
        let check = &mut work.selfcheck;
        if !check.is_reading() || !self.conn.is_up() {
            return;
        }
        if let Some(next) = check.next.take() {
            let key_set = self.keys.producer.key_set();
            let pattern = [&self.keys.appl_prefix[..], b"*"].concat();
            match next {
                NextRead::Members => self.conn.push(ApplTag::VerifyPending, |out| {
                    encode::command(out, &[b"SMEMBERS", key_set])
                }),
                NextRead::Scan(cursor) => self.conn.push(ApplTag::VerifyKeys, |out| {
                    encode::command(
                        out,
                        &[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"],
                    )
                }),
            }
            check.sent_list();
        }
        let room = self.conn.room().saturating_sub(MAX_COMMAND_BYTES) / HMGET_MAX;
        let (table, links) = (&work.sync.table, &work.sync.links);
        let (conn, prefix) = (&mut self.conn, &self.keys.appl_prefix);
        check.next_reads(table, room, |slot, generation, key| {
            let ip = ip_text(key.family, &key.addr);
            let name = links.name(key.ifindex);
            conn.push(ApplTag::VerifyEntry { slot, generation }, |out| {
                encode::push_command_header(out, 4);
                encode::push_arg(out, b"HMGET");
                encode::push_bulk_parts(out, &[prefix, name.as_bytes(), b":", ip.as_bytes()]);
                encode::push_arg(out, b"neigh");
                encode::push_arg(out, b"family");
            });
        });
        check.finish_if_done(table, &recorder.counters, monotonic_ns());
    }

    /// Retries due at `now` are owed again; repeated errors summed up.
    pub fn on_timer(&mut self, work: &mut NeighWork, now: u64) {
        let r = &mut self.replies;
        if !r.retries.is_empty() && now >= r.retry_at_ns {
            let sync = &mut work.sync;
            for retry in r.retries.drain(..) {
                match retry {
                    Retry::Entry {
                        slot,
                        generation,
                        name,
                    } => sync.table.refused(slot, generation, name, now, &sync.links),
                    Retry::Stale(key, name) => sync.table.stale_refused(key, name),
                    Retry::Warm(op) => self.text_ops.push_back(op),
                    Retry::WarmState => self.warm_state_owed = true,
                }
            }
        }
        for (kind, n) in r.errors.due(now) {
            log_error!("APPL_DB: {n} more {kind} error replies (each write stays owed)");
        }
    }

    /// When the next retry is due, if any.
    pub fn next_retry(&self) -> Option<u64> {
        (!self.replies.retries.is_empty()).then_some(self.replies.retry_at_ns)
    }

    /// Writes not yet acknowledged or not yet sent; `None` while down.
    pub fn unsettled(&self, table: &NeighTable) -> Option<usize> {
        self.conn.is_up().then(|| {
            self.conn.in_flight()
                + self.conn.unsent()
                + table.dirty()
                + table.stale_len()
                + self.replies.retries.len()
                + self.text_ops.len()
        })
    }
}

impl ApplReplies {
    /// Handle the reply to `tag`, received at `now`.
    pub fn on_reply(
        &mut self,
        tag: ApplTag,
        reply: &Reply<'_>,
        work: &mut NeighWork,
        recorder: &Recorder,
        now: u64,
    ) {
        let Some(e) = reply.error() else {
            match tag {
                ApplTag::Entry {
                    slot,
                    generation,
                    since_ns,
                    ..
                } => {
                    self.backoff_ns = RETRY_FIRST_NS;
                    let table = &work.sync.table;
                    probes::neigh_acked(
                        || {
                            let (k, _) = table.entry_at(slot, generation)?;
                            Some((k.ifindex, k.family, k.addr))
                        },
                        since_ns,
                        now,
                    );
                    work.sync.table.acked(slot, generation);
                    recorder.record(SampleKind::RecvToReply, now.saturating_sub(since_ns));
                }
                ApplTag::ScriptLoad => {
                    self.scripts_loaded = true;
                    let known = [SET_SCRIPT_SHA.as_bytes(), DEL_SCRIPT_SHA.as_bytes()];
                    if !matches!(reply, Reply::Bulk(sha) if known.contains(sha)) {
                        log_error!(
                            "APPL_DB: SCRIPT LOAD answered {reply:?}, expected a script's SHA1"
                        );
                    }
                }
                ApplTag::WarmState => log_notice!("warm restart: state reconciled"),
                _ => {}
            }
            return;
        };
        recorder.counters.redis_error_replies.inc();
        let code = String::from_utf8_lossy(reply.error_code().unwrap_or_default()).into_owned();
        if code == "NOSCRIPT" {
            self.reload_scripts = true;
        }
        let (what, retry) = match tag {
            ApplTag::Select | ApplTag::StateSelect => {
                log_error!("APPL_DB: SELECT failed: {}", String::from_utf8_lossy(e));
                return;
            }
            ApplTag::ScriptLoad => {
                log_error!(
                    "APPL_DB: SCRIPT LOAD failed: {}",
                    String::from_utf8_lossy(e)
                );
                self.reload_scripts = true;
                return;
            }
            ApplTag::Entry {
                slot,
                generation,
                name,
                ..
            } => (
                "neighbor write",
                Retry::Entry {
                    slot,
                    generation,
                    name,
                },
            ),
            ApplTag::Stale { key, name } => ("old name's delete", Retry::Stale(key, name)),
            ApplTag::Warm(op) => ("warm reconciliation", Retry::Warm(op)),
            ApplTag::WarmState => ("warm state", Retry::WarmState),
            // Answered in `read`, never here.
            ApplTag::VerifyCount
            | ApplTag::VerifyPending
            | ApplTag::VerifyKeys
            | ApplTag::VerifyEntry { .. } => return,
        };
        if self.errors.note(&format!("{what} {code}"), now) == Say::First {
            log_error!(
                "APPL_DB: {what} failed: {}; written again in {} ms (repeats of this error are counted, not logged)",
                cut(&String::from_utf8_lossy(e), MAX_QUOTE),
                self.backoff_ns / 1_000_000
            );
        }
        if self.retries.is_empty() {
            self.retry_at_ns = now + self.backoff_ns;
            self.backoff_ns = (self.backoff_ns * 2).min(RETRY_MAX_NS);
        }
        self.retries.push(retry);
    }
}

/// A self-verification read answered, judged as it is read (nothing is
/// copied out of the reply but the keys in transit).
fn on_verify(
    tag: ApplTag,
    reply: &Reply<'_>,
    prefix: &[u8],
    work: &mut NeighWork,
    recorder: &Recorder,
) {
    let items: &[Reply<'_>] = match reply {
        Reply::Array(items) => items,
        _ => &[],
    };
    let (check, sync) = (&mut work.selfcheck, &work.sync);
    match tag {
        ApplTag::VerifyCount => {
            // A count that is not one (an error reply) puts the run off.
            let n = match reply {
                Reply::Int(n) => (*n).max(0) as u64,
                _ => u64::MAX,
            };
            check.on_count(n, monotonic_ns());
        }
        ApplTag::VerifyPending => check.on_pending(
            items
                .iter()
                .filter_map(|r| r.as_bytes().map(<[u8]>::to_vec)),
        ),
        ApplTag::VerifyKeys => {
            // [cursor, [keys…]]
            let keys: &[Reply<'_>] = match items.get(1) {
                Some(Reply::Array(keys)) => keys,
                _ => &[],
            };
            check.on_keys(
                keys.iter()
                    .filter_map(|r| r.as_bytes()?.strip_prefix(prefix)),
                &sync.table,
            );
            check.on_scan_cursor(items.first().and_then(|r| r.as_bytes()).unwrap_or(b"0"));
        }
        ApplTag::VerifyEntry { slot, generation } => {
            let field = |i: usize| items.get(i).and_then(|r| r.as_bytes());
            check.on_entry(
                slot,
                generation,
                field(0),
                field(1),
                &sync.table,
                &sync.links,
            );
        }
        _ => return,
    }
    check.answered(&sync.table, &recorder.counters, monotonic_ns());
}

/// One loop turn's APPL_DB encoding: old names' deletes, then every
/// neighbor owed, while the connection's buffer has room; each command
/// tagged, counted, and the batch size recorded. `written_since` gets each
/// neighbor's oldest receive stamp. (Public for the benches and the
/// allocation test, which run it without sockets.)
pub fn encode_neighbor_writes(
    table: &mut NeighTable,
    links: &LinkNames,
    conn: &mut RedisConn<ApplTag>,
    producer: &ProducerTable,
    recorder: &Recorder,
    written_since: &mut Vec<u64>,
) -> u64 {
    let c = &recorder.counters;
    let mut commands = 0u64;
    written_since.clear();
    while conn.room() >= MAX_COMMAND_BYTES {
        let Some((key, name)) = table.pop_stale(links) else {
            break;
        };
        let ip = ip_text(key.family, &key.addr);
        conn.push(ApplTag::Stale { key, name }, |out| {
            producer.encode_del_parts(out, &[name.as_bytes(), b":", ip.as_bytes()])
        });
        c.neighbors_deleted.inc();
        commands += 1;
    }
    // Entries only once no old name's delete waits: a set under a name must
    // never be overtaken by an older delete of it.
    while conn.room() >= MAX_COMMAND_BYTES && table.stale_len() == 0 {
        let Some(w) = table.pop_write(links) else {
            break;
        };
        let ip = ip_text(w.key.family, &w.key.addr);
        let name = w.op.name();
        let tag = ApplTag::Entry {
            slot: w.slot,
            generation: w.generation,
            name,
            since_ns: w.since_ns,
        };
        let key = [name.as_bytes(), b":", ip.as_bytes()];
        match w.op {
            Op::Set(_, mac) => {
                let mac = text::lladdr(Some(&mac));
                let family = family_text(w.key.family);
                conn.push(tag, |out| {
                    producer.encode_set_parts(
                        out,
                        &key,
                        &[(b"neigh", mac.as_bytes()), (b"family", family.as_bytes())],
                    )
                });
                c.neighbors_written.inc();
            }
            Op::Del(_) => {
                conn.push(tag, |out| producer.encode_del_parts(out, &key));
                c.neighbors_deleted.inc();
            }
        }
        commands += 1;
        recorder.note_written(written_since, w.since_ns);
    }
    recorder.batch_encoded(commands);
    commands
}

impl Session for ApplSession {
    type Work = NeighWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        let db = self.keys.appl_db.as_bytes();
        self.conn.push(ApplTag::Select, |out| {
            encode::command(out, &[b"SELECT", db])
        });
        self.load_scripts();
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
            log_notice!("APPL_DB: reconnected; rewriting every neighbor");
            io.notifier.status("running");
            // Redis may have come back empty: every neighbor is owed.
            work.sync.table.rewrite_all(monotonic_ns());
        }
    }

    fn read(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let (replies, recorder) = (&mut self.replies, io.recorder);
        let prefix = &self.keys.appl_prefix;
        self.conn
            .read_replies(io.reactor, |tag, reply, now| match tag {
                Some(
                    tag @ (ApplTag::VerifyCount
                    | ApplTag::VerifyPending
                    | ApplTag::VerifyKeys
                    | ApplTag::VerifyEntry { .. }),
                ) => on_verify(tag, reply, prefix, work, recorder),
                Some(tag) => replies.on_reply(tag, reply, work, recorder, now),
                None => {}
            })
    }

    fn drop_connection(&mut self, work: &mut NeighWork, now_ns: u64) {
        self.replies.scripts_loaded = false;
        let (table, text_ops) = (&mut work.sync.table, &mut self.text_ops);
        let mut state_owed = false;
        let mut verify_lost = false;
        self.conn.drop_connection(now_ns, |tag| match tag {
            // Rewritten on reconnect (`rewrite_all`), except the deletes
            // under old names, which live outside the entries.
            ApplTag::Stale { key, name } => table.stale_refused(key, name),
            ApplTag::Warm(op) => text_ops.push_back(op),
            ApplTag::WarmState => state_owed = true,
            ApplTag::VerifyCount
            | ApplTag::VerifyPending
            | ApplTag::VerifyKeys
            | ApplTag::VerifyEntry { .. } => verify_lost = true,
            _ => {}
        });
        self.warm_state_owed |= state_owed;
        if verify_lost {
            work.selfcheck.abandon(now_ns);
        }
    }
}
