//! What must hold whatever the bytes: the invariants the fuzz targets and
//! the property tests (`tests/robustness.rs`, which includes this file) both
//! check. Each function panics on a violated invariant, and only then.
//!
//! Netlink: the parser and `LinkSync` never panic; every message lies inside
//! the datagram; a link's name and kind lie inside its message; `LinkSync`
//! accounts for every message exactly once; every write it owes is for a port
//! name and encodes to RESP that decodes back to the same command.
//!
//! RESP: the reply decoder never panics; a frame never claims more bytes
//! than it was given; a frame's bulk and status bytes lie inside it;
//! decoding is incremental: every proper prefix of a complete or incomplete
//! stream "needs more bytes" (neither a frame nor an error), so a reply split
//! across two `recv`s decodes the same as a whole one.

use std::fmt::Write as _;
use std::sync::Arc;

use syncd::engine::metrics::Counters;
use syncd::engine::netlink::parse::{messages, parse_event, Event, NLMSG_HDRLEN};
use syncd::engine::redis::encode;
use syncd::engine::redis::reply::{decode, Reply};
use syncd::port::follow::LinkSync;
use syncd::port::rules::is_port_name;
use syncd::port::table::{PortTable, MAX_PORTS};

/// Port id and sequence number of the captured dump (`dump_1`, `dump_2`).
pub const DUMP_PID: u32 = 7187;
pub const DUMP_SEQ: u32 = 77;

/// `inner` lies inside `outer` (an empty slice may be anywhere).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

/// Format an error's message, to run its `Display`.
fn render(e: &impl std::fmt::Display) -> usize {
    let mut s = String::new();
    let _ = write!(s, "{e}");
    s.len()
}

/// What a check saw, so a property test can tell that its generator
/// reaches every outcome (bits, OR-ed over a run).
pub mod seen {
    /// A link message parsed.
    pub const LINK: u8 = 1;
    /// A message with a bad body (counted, skipped).
    pub const BAD_MESSAGE: u8 = 2;
    /// Framing broken: the rest of the datagram dropped.
    pub const BAD_FRAMING: u8 = 4;
    /// `LinkSync` owed a STATE_DB write.
    pub const WRITE: u8 = 8;
    /// A complete reply decoded.
    pub const FRAME: u8 = 16;
    /// More bytes needed.
    pub const INCOMPLETE: u8 = 32;
    /// A protocol error.
    pub const PROTOCOL_ERROR: u8 = 64;
}

/// Parse one datagram the way `LinkSync` does; returns how many items the
/// message walk yielded (messages plus at most one framing error) and what
/// it saw.
pub fn parse_datagram(datagram: &[u8]) -> (usize, u8) {
    let mut saw = 0;
    let mut items = 0;
    let mut consumed = 0usize;
    for item in messages(datagram) {
        items += 1;
        let (header, payload) = match item {
            Ok(m) => m,
            Err(e) => {
                saw |= seen::BAD_FRAMING;
                render(&e);
                continue;
            }
        };
        assert!(within(datagram, payload), "payload outside the datagram");
        assert_eq!(payload.len() + NLMSG_HDRLEN, header.len as usize);
        consumed += header.len as usize;
        assert!(consumed <= datagram.len(), "messages overrun the datagram");
        match parse_event(&header, payload) {
            Ok(Event::Link(link)) => {
                saw |= seen::LINK;
                assert!(within(payload, link.name), "name outside its message");
                assert!(!link.name.is_empty(), "a link without a name was accepted");
                assert!(!link.name.contains(&0), "name keeps its NUL");
                if let Some(kind) = link.kind {
                    assert!(within(payload, kind), "kind outside its message");
                    assert!(!kind.contains(&0), "kind keeps its NUL");
                }
            }
            Ok(_) => {}
            Err(e) => {
                saw |= seen::BAD_MESSAGE;
                render(&e);
            }
        }
    }
    assert!(items <= datagram.len() / NLMSG_HDRLEN + 1);
    (items, saw)
}

fn messages_counted(c: &Counters) -> u64 {
    c.msgs_newlink.get()
        + c.msgs_dellink.get()
        + c.msgs_done.get()
        + c.msgs_error.get()
        + c.msgs_other.get()
        + c.malformed.get()
}

/// Apply a datagram and check that every message was accounted for once.
fn apply(sync: &mut LinkSync, datagram: &[u8], items: usize, rx_ns: u64) {
    let c = sync.counters();
    let (before, datagrams) = (messages_counted(&c), c.datagrams.get());
    let _ = sync.on_datagram(datagram, rx_ns, DUMP_PID);
    assert_eq!(c.datagrams.get(), datagrams + 1);
    assert_eq!(
        messages_counted(&c) - before,
        items as u64,
        "every message is counted exactly once"
    );
    assert!(sync.ports.len() <= MAX_PORTS);
}

/// Answer the table's membership queries (alternately present and absent),
/// then take every write owed and check it encodes to a well-formed command.
fn drain(sync: &mut LinkSync, turn: u64) -> u8 {
    let mut queries = Vec::new();
    sync.ports.take_queries(&mut queries);
    for (i, &id) in queries.iter().enumerate() {
        sync.ports.set_membership(id, (i as u64 + turn) % 2 == 0);
    }
    let prefix: &[u8] = b"PORT_TABLE|";
    let mut out = Vec::new();
    let mut saw = 0;
    while let Some(w) = sync.ports.pop_write() {
        saw |= seen::WRITE;
        let name = w.name.as_bytes();
        assert!(is_port_name(name), "a write for {name:?}");
        let key_len = prefix.len() + name.len();
        if w.del {
            out.clear();
            encode::del_key(&mut out, prefix, name);
            assert!(out.len() <= encode::del_key_max_len(key_len));
            let args = command_args(&out);
            assert_eq!(args.len(), 2);
            assert_eq!(args[1], [prefix, name].concat());
        }
        if let Some(status) = w.hset {
            out.clear();
            encode::hset_port_status(&mut out, prefix, name, &status);
            assert!(out.len() <= encode::hset_port_status_max_len(key_len));
            let args = command_args(&out);
            assert_eq!(args.len(), 10);
            assert_eq!(args[1], [prefix, name].concat());
            assert_eq!(args[9], status.mtu.to_string().into_bytes());
        }
    }
    assert_eq!(sync.ports.dirty(), 0);
    saw
}

/// The arguments of one encoded command, decoded back.
fn command_args(out: &[u8]) -> Vec<Vec<u8>> {
    match decode(out) {
        Ok(Some((Reply::Array(items), used))) => {
            assert_eq!(used, out.len(), "one command, all of it");
            items
                .iter()
                .map(|r| r.as_bytes().expect("bulk strings").to_vec())
                .collect()
        }
        other => panic!("our own encoding does not decode: {other:?}"),
    }
}

/// A `LinkSync` as after start-up: two ports known in APPL_DB
/// `PORT_TABLE`, one configured but not yet known there.
fn configured() -> LinkSync {
    let mut table = PortTable::with_capacity(8);
    table.add_configured(b"Ethernet0", true, false);
    table.add_configured(b"Ethernet4", true, false);
    table.add_configured(b"Ethernet8", false, false);
    LinkSync::new(table, Arc::new(Counters::default()))
}

/// Everything for one netlink datagram: the parser, then `LinkSync` in the
/// steady state and during a cold start's first dump (old interfaces from
/// the datagram itself, as a snapshot) with an overrun.
pub fn netlink(datagram: &[u8]) -> u8 {
    let (items, mut saw) = parse_datagram(datagram);

    let mut steady = configured();
    apply(&mut steady, datagram, items, 1);
    saw |= drain(&mut steady, 0);
    apply(&mut steady, datagram, items, 2);
    saw |= drain(&mut steady, 1);

    let mut cold = configured();
    // The datagram as the start-up snapshot: its Ethernet* links are old.
    let old: Vec<_> = syncd::engine::netlink::parse::messages(datagram)
        .filter_map(|m| {
            let (h, p) = m.ok()?;
            match syncd::engine::netlink::parse::parse_event(&h, p).ok()? {
                syncd::engine::netlink::parse::Event::Link(l) => {
                    syncd::port::follow::old_interface(&l)
                }
                _ => None,
            }
        })
        .collect();
    for (_, name) in &old {
        assert!(name.as_bytes().starts_with(b"Ethernet"));
    }
    cold.ignore_old_interfaces(old.iter().map(|(i, _)| *i));
    cold.dump_started(DUMP_SEQ, 0);
    apply(&mut cold, datagram, items, 1);
    cold.on_overrun();
    apply(&mut cold, datagram, items, 2);
    if cold.dump_wanted() {
        cold.dump_started(DUMP_SEQ, 0);
    }
    apply(&mut cold, datagram, items, 3);
    saw | drain(&mut cold, 0)
}

/// A sequence of datagrams through one `LinkSync`, as the loop feeds it.
pub fn netlink_sequence<'a>(datagrams: impl IntoIterator<Item = &'a [u8]>) -> u8 {
    let mut saw = 0;
    let mut sync = configured();
    sync.dump_started(DUMP_SEQ, 0);
    for (turn, d) in datagrams.into_iter().enumerate() {
        let (items, s) = parse_datagram(d);
        saw |= s;
        apply(&mut sync, d, items, turn as u64 + 1);
        if turn % 3 == 2 {
            sync.on_overrun();
            if sync.dump_wanted() {
                sync.dump_started(DUMP_SEQ, 0);
            }
        }
        saw |= drain(&mut sync, turn as u64);
    }
    saw
}

/// Every slice of a reply lies inside the bytes it was decoded from.
fn check_reply(r: &Reply<'_>, frame: &[u8]) {
    match r {
        Reply::Status(b) | Reply::Error(b) | Reply::Bulk(b) => {
            assert!(within(frame, b), "reply bytes outside the frame");
        }
        Reply::Array(items) => {
            assert!(items.len() <= frame.len(), "more items than bytes");
            for item in items {
                check_reply(item, frame);
            }
            let _ = r.pairs();
        }
        Reply::Int(_) | Reply::Nil => {}
    }
    let _ = (r.as_bytes(), r.error(), r.is_error_code(b"NOSCRIPT"));
}

/// Proper prefix lengths to try for a frame of `n` bytes: all of them when
/// short, else the first and last 64 and 64 spread between.
fn prefixes(n: usize) -> impl Iterator<Item = usize> {
    let all = n <= 256;
    let step = (n / 64).max(1);
    (0..n).filter(move |&k| all || k < 64 || k + 64 >= n || k % step == 0)
}

/// Everything for one receive buffer of Redis replies.
pub fn resp(buf: &[u8]) -> u8 {
    let saw = match decode(buf) {
        Ok(Some(_)) => seen::FRAME,
        Ok(None) => seen::INCOMPLETE,
        Err(_) => seen::PROTOCOL_ERROR,
    };
    match decode(buf) {
        Ok(Some((reply, used))) => {
            assert!(
                used > 0 && used <= buf.len(),
                "used {used} of {}",
                buf.len()
            );
            check_reply(&reply, &buf[..used]);
            assert_eq!(
                decode(&buf[..used]),
                Ok(Some((reply.clone(), used))),
                "a frame decodes the same from exactly its bytes"
            );
            for k in prefixes(used) {
                let d = decode(&buf[..k]);
                assert!(
                    matches!(d, Ok(None)),
                    "prefix of {k} bytes of a {used}-byte frame: {d:?}"
                );
            }
        }
        Ok(None) => {
            for k in prefixes(buf.len()) {
                let d = decode(&buf[..k]);
                assert!(
                    matches!(d, Ok(None)),
                    "prefix of {k} bytes of an incomplete frame: {d:?}"
                );
            }
        }
        Err(e) => {
            render(&e);
        }
    }
    // As the connection does: frame after frame until one is incomplete.
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Ok(Some((reply, used))) => {
                assert!(used > 0 && at + used <= buf.len());
                check_reply(&reply, &buf[at..at + used]);
                at += used;
            }
            _ => break,
        }
    }
    saw
}

/// Replies arriving in pieces: `buf` cut at `cuts` (sorted or not) and fed
/// to a decoder that keeps undecoded bytes, as `RedisConn` does. The frames
/// must be the ones decoded from the whole buffer.
pub fn resp_split(buf: &[u8], cuts: &[usize]) {
    let mut whole = Vec::new();
    let mut at = 0;
    while let Ok(Some((reply, used))) = decode(&buf[at..]) {
        whole.push((format!("{reply:?}"), used));
        at += used;
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (buf.len() + 1)).collect();
    cuts.push(buf.len());
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let (mut start, mut end) = (0usize, 0usize);
    for cut in cuts {
        end = end.max(cut);
        loop {
            match decode(&buf[start..end]) {
                Ok(Some((reply, used))) => {
                    pieces.push((format!("{reply:?}"), used));
                    start += used;
                }
                Ok(None) => break,
                Err(_) => {
                    // Only the whole stream's own error may stop it, and then
                    // nothing more is decodable from the whole buffer either.
                    assert_eq!(start, at, "an error on a split the whole did not have");
                    return;
                }
            }
        }
    }
    assert_eq!(pieces, whole, "split decoding differs from whole decoding");
}

/// Everything for one datagram through neighsyncd's follower: the rules,
/// the table and the PST encoding never panic; every write it owes
/// encodes to one RESP command that decodes back whole; a dump around the
/// datagram (with an overrun) reconciles without panicking. Returns what it
/// saw (`seen::WRITE` when a neighbor write was owed).
pub fn neighbors(datagram: &[u8]) -> u8 {
    use syncd::engine::netlink::drain::KernelFollow;
    use syncd::engine::sonic::pst::ProducerTable;
    use syncd::neigh::context::NeighConfig;
    use syncd::neigh::follow::NeighSync;
    use syncd::neigh::rules::{family_text, ip_text};
    use syncd::neigh::table::{NeighTable, Op};

    let mut saw = 0;
    for dual_tor in [false, true] {
        let mut config = NeighConfig {
            dual_tor,
            ..NeighConfig::default()
        };
        if let Some(n) = syncd::neigh::links::IfName::new(b"Ethernet0") {
            config.link_local.insert(n);
        }
        let mut sync = NeighSync::new(NeighTable::default(), config, Arc::new(Counters::default()));
        // Links first, as the follower's own dump would bring them.
        sync.on_datagram(datagram, 1, DUMP_PID);
        sync.dump_started(DUMP_SEQ, 0);
        sync.on_datagram(datagram, 2, DUMP_PID);
        sync.on_lost(true);
        sync.on_datagram(datagram, 3, DUMP_PID);
        let producer = ProducerTable::new("NEIGH_TABLE", 0, b':');
        let mut out = Vec::new();
        while let Some((key, name)) = sync.table.pop_stale(&sync.links) {
            let ip = ip_text(key.family, &key.addr);
            producer.encode_del_parts(&mut out, &[name.as_bytes(), b":", ip.as_bytes()]);
        }
        while let Some(w) = sync.table.pop_write(&sync.links) {
            saw |= seen::WRITE;
            let ip = ip_text(w.key.family, &w.key.addr);
            let name = w.op.name();
            let key = [name.as_bytes(), b":", ip.as_bytes()];
            out.clear();
            match w.op {
                Op::Set(_, mac) => {
                    let mac = syncd::neigh::text::lladdr(Some(&mac));
                    let fam = family_text(w.key.family);
                    producer.encode_set_parts(
                        &mut out,
                        &key,
                        &[(b"neigh", mac.as_bytes()), (b"family", fam.as_bytes())],
                    );
                }
                Op::Del(_) => producer.encode_del_parts(&mut out, &key),
            }
            match decode(&out) {
                Ok(Some((Reply::Array(args), used))) => {
                    assert_eq!(used, out.len(), "one command, whole");
                    assert!(args.len() == 11 || args.len() == 13, "{}", args.len());
                }
                other => panic!("a neighbor write does not decode back: {other:?}"),
            }
            sync.table.acked(w.slot, w.generation);
        }
    }
    saw
}
