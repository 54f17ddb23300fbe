//! The events session: keyspace notifications of the CONFIG_DB keys the
//! rules depend on (`PEER_SWITCH|*`, the three link-local tables) and of
//! `LOGGER|neighsyncd`, on a connection in push mode. Any of them asks the
//! CONFIG_DB session for a new round of reads.

use crate::engine::event_loop::LoopIo;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::redis::session::{self, Session};
use crate::neigh::keys::NeighKeys;
use crate::neigh::session::NeighWork;

/// Whether a pushed message is a notification (not a subscription's
/// confirmation).
pub fn is_notification(reply: &Reply<'_>) -> bool {
    let Reply::Array(items) = reply else {
        return false;
    };
    matches!(
        items.first().and_then(|r| r.as_bytes()),
        Some(b"message" | b"pmessage")
    )
}

/// The subscription connection.
pub struct EventsSession {
    pub conn: RedisConn<()>,
    keys: NeighKeys,
}

impl EventsSession {
    pub fn new(mut conn: RedisConn<()>, keys: NeighKeys) -> EventsSession {
        conn.set_push_mode(true);
        EventsSession { conn, keys }
    }

    /// Send what is queued (the subscriptions after a connect).
    pub fn write(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        session::flush(self, work, io);
    }
}

impl Session for EventsSession {
    type Work = NeighWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) {
        let patterns = self.keys.config_patterns();
        let logger = &self.keys.logger.channel;
        self.conn.push_untagged(|out| {
            let mut args: Vec<&[u8]> = vec![b"PSUBSCRIBE"];
            args.extend(patterns.iter().map(|p| p.as_slice()));
            encode::command(out, &args);
            encode::command(out, &[b"SUBSCRIBE", logger]);
        });
        // Changes made while we were not subscribed are found by asking.
        work.config_wanted = true;
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
        }
    }

    fn read(&mut self, work: &mut NeighWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        self.conn.read_replies(io.reactor, |_, reply, _| {
            if is_notification(reply) {
                work.config_wanted = true;
            }
        })
    }

    fn drop_connection(&mut self, _work: &mut NeighWork, now_ns: u64) {
        self.conn.drop_connection(now_ns, drop);
    }
}
