//! The CONFIG_DB session: reads what the rules depend on (any
//! `PEER_SWITCH|*` key; each interface's `ipv6_use_link_local_only`) and
//! the log level, in one round of pipelined reads whenever the events
//! session or the fallback poll says CONFIG_DB may have changed. A round
//! that changes the rules' facts asks for a dump, which applies the new
//! rules to every neighbor the kernel has.

use crate::engine::event_loop::LoopIo;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::redis::session::{self, Session};
use crate::engine::sonic::logger::{self, RunLog};
use crate::neigh::context::{link_local_interface, NeighConfig, LINK_LOCAL_FIELD, LINK_LOCAL_ON};
use crate::neigh::keys::NeighKeys;
use crate::neigh::links::IfName;
use crate::neigh::session::NeighWork;
use crate::{log_notice, log_warn};

/// What a CONFIG_DB command in flight is.
#[derive(Debug, Clone)]
pub enum ConfigTag {
    Select,
    /// `KEYS PEER_SWITCH|*`.
    PeerSwitches,
    /// `KEYS <table>|*` of a link-local table.
    Interfaces(&'static str),
    /// `HGET <table>|<name> ipv6_use_link_local_only`.
    Mode(IfName),
    /// `HMGET LOGGER|neighsyncd LOGLEVEL LOGOUTPUT`.
    Logger,
}

/// One round of reads in progress.
#[derive(Debug, Default)]
struct Round {
    /// Replies still to come.
    pending: usize,
    peer_switches: usize,
    link_local: Vec<IfName>,
    /// A reply was an error: the round says nothing; read again later.
    failed: bool,
}

/// The CONFIG_DB query connection.
pub struct ConfigSession {
    pub conn: RedisConn<ConfigTag>,
    keys: NeighKeys,
    round: Option<Round>,
}

impl ConfigSession {
    /// SIGHUP: the run's new log settings, where CONFIG_DB made no choice.
    pub fn reload_log(&self, work: &mut NeighWork, run: RunLog) {
        let moves = work.logger.set_run(run);
        logger::apply(&self.keys.logger, moves, "SIGHUP");
    }

    pub fn new(conn: RedisConn<ConfigTag>, keys: NeighKeys) -> ConfigSession {
        ConfigSession {
            conn,
            keys,
            round: None,
        }
    }

    /// Start a round of reads when one is wanted and none runs.
    pub fn write(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        if work.config_wanted && self.round.is_none() && self.conn.is_up() {
            work.config_wanted = false;
            let k = &self.keys;
            let mut round = Round {
                pending: 2 + k.link_local_prefixes.len(),
                ..Round::default()
            };
            let pattern = [&k.peer_switch_prefix[..], b"*"].concat();
            self.conn.push(ConfigTag::PeerSwitches, |out| {
                encode::command(out, &[b"KEYS", &pattern])
            });
            for (table, prefix) in &k.link_local_prefixes {
                let pattern = [&prefix[..], b"*"].concat();
                self.conn.push(ConfigTag::Interfaces(table), |out| {
                    encode::command(out, &[b"KEYS", &pattern])
                });
            }
            let logger = &k.logger.key;
            self.conn.push(ConfigTag::Logger, |out| {
                encode::command(out, &[b"HMGET", logger, b"LOGLEVEL", b"LOGOUTPUT"])
            });
            round.failed = false;
            self.round = Some(round);
        }
        session::flush(self, work, io);
    }

    fn on_reply(&mut self, tag: ConfigTag, reply: &Reply<'_>, work: &mut NeighWork) {
        if let ConfigTag::Select = tag {
            if let Some(e) = reply.error() {
                log_warn!("CONFIG_DB: SELECT failed: {}", String::from_utf8_lossy(e));
            }
            return;
        }
        let Some(round) = self.round.as_mut() else {
            return;
        };
        round.pending = round.pending.saturating_sub(1);
        if let Some(e) = reply.error() {
            log_warn!(
                "CONFIG_DB: {tag:?} failed: {}; read again later",
                String::from_utf8_lossy(e)
            );
            round.failed = true;
        } else {
            match tag {
                ConfigTag::PeerSwitches => round.peer_switches = reply_keys(reply).count(),
                ConfigTag::Interfaces(table) => {
                    let prefix = self
                        .keys
                        .link_local_prefixes
                        .iter()
                        .find(|(t, _)| *t == table)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    for key in reply_keys(reply) {
                        let Some(name) = key
                            .strip_prefix(prefix.as_slice())
                            .and_then(|n| link_local_interface(table, n))
                            .and_then(IfName::new)
                        else {
                            continue;
                        };
                        round.pending += 1;
                        self.conn.push(ConfigTag::Mode(name), |out| {
                            encode::command(out, &[b"HGET", key, LINK_LOCAL_FIELD])
                        });
                    }
                }
                ConfigTag::Mode(name) => {
                    if reply.as_bytes() == Some(LINK_LOCAL_ON) {
                        round.link_local.push(name);
                    }
                }
                ConfigTag::Logger => {
                    let field = |i: usize| match reply {
                        Reply::Array(items) => items.get(i).and_then(|r| r.as_bytes()),
                        _ => None,
                    };
                    let moves = work.logger.on_read(field(0), field(1));
                    logger::apply(&self.keys.logger, moves, "configuration");
                }
                ConfigTag::Select => {}
            }
        }
        if round.pending > 0 {
            return;
        }
        let Some(round) = self.round.take() else {
            return;
        };
        if round.failed {
            return;
        }
        let new = NeighConfig {
            dual_tor: round.peer_switches > 0,
            link_local: round.link_local.into_iter().collect(),
        };
        apply_config(work, new);
    }
}

/// Take CONFIG_DB's facts; when they differ from the rules' current ones,
/// every neighbor is decided again (a dump). Returns whether they changed.
pub fn apply_config(work: &mut NeighWork, new: NeighConfig) -> bool {
    let sync = &mut work.sync;
    if sync.config == new {
        return false;
    }
    let mut names: Vec<String> = new.link_local.iter().map(|n| n.to_string()).collect();
    names.sort();
    log_notice!(
        "CONFIG_DB changed the rules: dual-ToR {}, IPv6 link-local mode on [{}]; applying them to every neighbor",
        if new.dual_tor { "on" } else { "off" },
        names.join(", ")
    );
    sync.config = new;
    sync.want_dump();
    true
}

/// The keys of a `KEYS` reply.
fn reply_keys<'a>(reply: &'a Reply<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
    let items: &[Reply<'_>] = match reply {
        Reply::Array(items) => items,
        _ => &[],
    };
    items.iter().filter_map(|r| r.as_bytes())
}

impl Session for ConfigSession {
    type Work = NeighWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        let db = self.keys.config_db.as_bytes();
        self.conn.push(ConfigTag::Select, |out| {
            encode::command(out, &[b"SELECT", db])
        });
        // What changed while it was away is read again.
        work.config_wanted = true;
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
        }
    }

    fn read(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let mut answers: Vec<(ConfigTag, OwnedReply)> = Vec::new();
        let result = self.conn.read_replies(io.reactor, |tag, reply, _| {
            if let Some(tag) = tag {
                answers.push((tag, OwnedReply::of(reply)));
            }
        });
        for (tag, reply) in answers {
            reply.with(|r| self.on_reply(tag, r, work));
        }
        result
    }

    fn drop_connection(&mut self, work: &mut NeighWork, now_ns: u64) {
        if self.round.take().is_some() {
            work.config_wanted = true;
        }
        self.conn.drop_connection(now_ns, drop);
    }
}

/// A reply copied out of the connection's buffer (CONFIG_DB answers are
/// few and small; the session pushes follow-up reads while handling them,
/// which the buffer's borrow would not allow).
enum OwnedReply {
    Nil,
    Error(Vec<u8>),
    Bytes(Vec<u8>),
    /// An array, its nil items kept in place.
    Items(Vec<Option<Vec<u8>>>),
    Other,
}

impl OwnedReply {
    fn of(reply: &Reply<'_>) -> OwnedReply {
        match reply {
            Reply::Nil => OwnedReply::Nil,
            Reply::Array(items) => OwnedReply::Items(
                items
                    .iter()
                    .map(|r| r.as_bytes().map(|b| b.to_vec()))
                    .collect(),
            ),
            r => match (r.error(), r.as_bytes()) {
                (Some(e), _) => OwnedReply::Error(e.to_vec()),
                (None, Some(b)) => OwnedReply::Bytes(b.to_vec()),
                (None, None) => OwnedReply::Other,
            },
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Reply<'_>) -> T) -> T {
        match self {
            OwnedReply::Nil => f(&Reply::Nil),
            OwnedReply::Error(e) => f(&Reply::Error(e)),
            OwnedReply::Bytes(b) => f(&Reply::Bulk(b)),
            OwnedReply::Items(items) => {
                let items: Vec<Reply<'_>> = items
                    .iter()
                    .map(|i| i.as_deref().map_or(Reply::Nil, Reply::Bulk))
                    .collect();
                f(&Reply::Array(items))
            }
            OwnedReply::Other => f(&Reply::Status(b"")),
        }
    }
}
