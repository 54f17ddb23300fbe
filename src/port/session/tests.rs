//! The sessions' reply logic without sockets: replies as values, the port
//! table and the outbox as they end up.

use super::appl::{ApplReplies, ApplTag, OutboxItem};
use super::state::{StateReplies, StateTag};
use crate::engine::metrics::{Counters, Recorder};
use crate::engine::netlink::parse::{LinkChange, LinkMessage, IFF_RUNNING, IFF_UP};
use crate::engine::redis::reply::Reply;
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::pst::PstSet;
use crate::port::keys::PortKeys;
use crate::port::table::PortTable;

const MS: u64 = 1_000_000;

/// Issue 11 point 2: only LOADING, BUSY and TRYAGAIN were retried; an OOM,
/// MISCONF, READONLY or any other error lost the write for good.
#[test]
fn every_state_db_error_leaves_the_port_owed_and_retried_with_backoff() {
    let (recorder, _rx) = Recorder::new();
    let mut ports = PortTable::default();
    ports.add_configured(b"Ethernet0", true, false);
    let up = LinkMessage {
        change: LinkChange::New,
        ifindex: 5,
        flags: IFF_UP | IFF_RUNNING,
        name: b"Ethernet0",
        mtu: Some(9100),
        master: None,
        kind: Some(b"veth"),
        operstate: None,
    };
    ports.apply(&up, 1, false);
    assert!(ports.pop_write().is_some());
    let id = ports.find(b"Ethernet0").unwrap();
    let mut r = StateReplies::default();
    let hset = StateTag::Hset {
        port: id,
        since_ns: 0,
    };
    let errors: [&[u8]; 5] = [
        b"OOM command not allowed when used memory > 'maxmemory'.",
        b"MISCONF Redis is configured to save RDB snapshots",
        b"READONLY You can't write against a read only replica.",
        b"BUSY Redis is busy running a script.",
        b"WRONGTYPE Operation against a key holding the wrong kind of value",
    ];
    let mut now = 0;
    let mut waits = Vec::new();
    for e in errors {
        r.on_reply(
            hset,
            &Reply::Error(e),
            &ports,
            b"PORT_TABLE|",
            &recorder,
            now,
        );
        assert_eq!(r.retry_ports, vec![id], "{}", String::from_utf8_lossy(e));
        let due = r.next_retry().unwrap();
        waits.push(due - now);
        r.on_timer(&mut ports, due - 1);
        assert_eq!(r.retry_ports, vec![id], "not before it is due");
        r.on_timer(&mut ports, due);
        assert!(r.retry_ports.is_empty());
        assert!(ports.pop_write().is_some(), "the port owes its write again");
        now = due;
    }
    assert_eq!(
        waits,
        vec![100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS]
    );
    assert_eq!(recorder.counters.redis_error_replies.get(), 5);
    // A success resets the backoff.
    r.on_reply(
        hset,
        &Reply::Status(b"OK"),
        &ports,
        b"PORT_TABLE|",
        &recorder,
        now,
    );
    r.on_reply(
        hset,
        &Reply::Error(errors[0]),
        &ports,
        b"PORT_TABLE|",
        &recorder,
        now,
    );
    assert_eq!(r.next_retry(), Some(now + 100 * MS));
}

/// Issue 11 point 2: an error on the `PortInitDone` EVALSHA marked it done.
#[test]
fn port_init_done_is_done_only_when_acknowledged() {
    let dbs = Databases::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/database_config.json"
    )))
    .unwrap();
    let keys = PortKeys::new(&dbs);
    let counters = Counters::default();
    let mut ports = PortTable::default();
    let mut r = ApplReplies::default();
    r.outbox.push(OutboxItem {
        set: PstSet::new("PortInitDone", &[("lanes", "0")]),
        acked: false,
        sent: true,
    });
    let pst = ApplTag::Pst(0);
    let oom = Reply::Error(b"OOM command not allowed when used memory > 'maxmemory'.");
    r.on_reply(pst, &oom, &mut ports, &keys, &counters, 0);
    assert!(!r.outbox[0].acked && !r.outbox[0].sent, "owed again");
    assert_eq!(r.resend_at_ns, 100 * MS);
    r.outbox[0].sent = true;
    let busy = Reply::Error(b"BUSY Redis is busy running a script.");
    r.on_reply(pst, &busy, &mut ports, &keys, &counters, 100 * MS);
    assert!(!r.outbox[0].acked);
    assert_eq!(r.resend_at_ns, 300 * MS, "the backoff doubles");
    r.outbox[0].sent = true;
    let noscript = Reply::Error(b"NOSCRIPT No matching script.");
    r.on_reply(pst, &noscript, &mut ports, &keys, &counters, 300 * MS);
    assert!(r.reload_script && !r.outbox[0].sent);
    r.outbox[0].sent = true;
    r.on_reply(pst, &Reply::Int(1), &mut ports, &keys, &counters, 400 * MS);
    assert!(r.outbox[0].acked);
    assert_eq!(counters.redis_error_replies.get(), 2);
}
