//! The events session: keyspace notifications of APPL_DB `PORT_TABLE:*`
//! (a port appearing or going away there) and of CONFIG_DB
//! `LOGGER|portsyncd`, on a connection in push mode.

use crate::engine::event_loop::LoopIo;
use crate::engine::redis::conn::{Connection, Lost, RedisConn};
use crate::engine::redis::encode;
use crate::engine::redis::reply::Reply;
use crate::engine::redis::session::{self, Session};
use crate::port::keys::PortKeys;
use crate::port::session::PortWork;

/// What one notification says about APPL_DB `PORT_TABLE:<name>`, from its
/// event name: the key exists now (`true`), is gone (`false`), or neither.
fn presence(event: &[u8]) -> Option<bool> {
    match event {
        b"hset" | b"hsetnx" | b"hmset" | b"hincrby" | b"hincrbyfloat" | b"rename_to"
        | b"restore" => Some(true),
        b"del" | b"expired" | b"evicted" | b"rename_from" => Some(false),
        _ => None,
    }
}

/// Apply one pushed message: `["pmessage", pattern, channel, event]` for
/// a port, `["message", channel, event]` for the logger. Pure.
pub fn on_notification(reply: &Reply<'_>, keys: &PortKeys, work: &mut PortWork) {
    let Reply::Array(items) = reply else { return };
    if items.len() == 3
        && items[0].as_bytes() == Some(b"message")
        && items[1].as_bytes() == Some(keys.logger.channel.as_slice())
    {
        work.logger_wanted = true;
        return;
    }
    if items.len() != 4 || items[0].as_bytes() != Some(b"pmessage") {
        return;
    }
    let (Some(channel), Some(event)) = (items[2].as_bytes(), items[3].as_bytes()) else {
        return;
    };
    let Some(name) = channel.strip_prefix(keys.keyspace_prefix.as_slice()) else {
        return;
    };
    let ports = &mut work.sync.ports;
    match presence(event) {
        // Learn it even for ports not seen yet: the netdev may follow.
        Some(true) => {
            if let Some(id) = ports.intern(name) {
                ports.set_membership(id, true);
            }
        }
        Some(false) => {
            if let Some(id) = ports.find(name) {
                ports.set_membership(id, false);
            }
        }
        None => {}
    }
}

/// The subscription connection.
pub struct EventsSession {
    pub conn: RedisConn<()>,
    keys: PortKeys,
}

impl EventsSession {
    pub fn new(mut conn: RedisConn<()>, keys: PortKeys) -> EventsSession {
        conn.set_push_mode(true);
        EventsSession { conn, keys }
    }

    /// Send what is queued (the subscriptions after a connect).
    pub fn write(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        session::flush(self, work, io);
    }
}

impl Session for EventsSession {
    type Work = PortWork;

    fn conn(&mut self) -> &mut dyn Connection {
        &mut self.conn
    }

    fn on_connected(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) {
        let keys = &self.keys;
        let mut pattern = keys.keyspace_prefix.clone();
        pattern.push(b'*');
        let logger = keys.logger.live.then_some(&keys.logger.channel);
        self.conn.push_untagged(|out| {
            encode::command(out, &[b"SELECT", keys.appl_db.as_bytes()]);
            encode::command(out, &[b"PSUBSCRIBE", &pattern]);
            if let Some(channel) = logger {
                encode::command(out, &[b"SUBSCRIBE", channel]);
            }
        });
        // Log settings changed while we were not subscribed.
        work.logger_wanted = keys.logger.live;
        // Changes made while we were not subscribed are found by asking.
        work.sync.ports.requery_absent();
        if self.conn.connects > 1 {
            io.recorder.counters.redis_reconnects.inc();
        }
    }

    fn read(&mut self, work: &mut PortWork, io: &mut LoopIo<'_>) -> Result<(), Lost> {
        let keys = &self.keys;
        self.conn
            .read_replies(io.reactor, |_, reply, _| on_notification(reply, keys, work))
    }

    fn drop_connection(&mut self, _work: &mut PortWork, now_ns: u64) {
        self.conn.drop_connection(now_ns, drop);
    }
}
