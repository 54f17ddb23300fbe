//! The neighbor floor: the least any neighsyncd can do per neighbor
//! message, measured the same way as the daemon. Wait for the netlink
//! socket (`RTNLGRP_NEIGH`), read one datagram, and for each IPv4/IPv6
//! neighbor message send the ProducerStateTable `EVALSHA` SONiC sends
//! (the daemon's own encoder and address text, so the bytes are
//! identical: set with `neigh` and `family`, or del) on a blocking
//! connection, wait for the reply, next. No SONiC rules beyond the family,
//! no batching, no resync after an overrun.
//!
//! The batching floor (`flood __neigh-floor-batching`, for bursts) is the
//! least a writer that batches can do: on each wake-up it reads every
//! datagram the socket holds (the daemon's own reader: `recvmmsg`, 64 at a
//! time), keeps each
//! neighbor's latest state, and sends one pipelined batch of the same
//! scripts (one per neighbor), then reads their replies.
//!
//! Like portsyncd's floor it is its own process (flood re-executed as
//! `flood __neigh-floor`, started by [`crate::floor::Floor::start`] with
//! [`crate::floor::FloorKind::Neigh`]) in a twin namespace holding the
//! same ports and neighbors, writing to its own database.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use syncd::engine::metrics::Counters;
use syncd::engine::netlink::neigh::{
    parse_neigh, NeighChange, AF_INET, AF_INET6, RTM_DELNEIGH, RTM_NEWNEIGH,
};
use syncd::engine::netlink::parse;
use syncd::engine::netlink::reader::{LinkReader, Read};
use syncd::engine::netlink::ring::RecvRing;
use syncd::engine::netlink::socket::{NetlinkSocket, RTMGRP_NEIGH};
use syncd::engine::redis::client::Client;
use syncd::engine::sonic::pst::{ProducerTable, DEL_SCRIPT_SHA, SET_SCRIPT_SHA};
use syncd::engine::sys::monotonic_ns;
use syncd::neigh::keys::NEIGH_TABLE;
use syncd::neigh::text;

use crate::floor::{recv_counting, send_and_await, wait_readable, FloorArgs, Shared, RCVBUF};
use crate::kernel::{in_netns, Requests};
use crate::Error;

/// `flood __neigh-floor[-batching] NETNS ADDRESS DB SEPARATOR SHM`: the
/// floor process.
pub fn main(args: &[String], batching: bool) -> u8 {
    match floor_main(args, batching) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flood neighbor floor: {e}");
            1
        }
    }
}

fn floor_main(args: &[String], batching: bool) -> Result<(), Error> {
    let a = FloorArgs::parse(args)?;
    let sock = in_netns(Some(&a.netns), || {
        NetlinkSocket::events_in(RTMGRP_NEIGH, RCVBUF)
            .map(|(s, _)| s)
            .map_err(|e| Error::failed(format!("netlink socket: {e}")))
    })?;
    // The twin's ports never change during a run: one dump names them.
    let names: HashMap<i32, Vec<u8>> = Requests::open(Some(&a.netns))?
        .dump()?
        .into_iter()
        .map(|(name, l)| (l.ifindex, name.into_bytes()))
        .collect();
    let mut client = Client::connect_db(&a.addr, a.db, Duration::from_secs(10))
        .map_err(|e| Error::failed(format!("connecting to Redis at {}: {e}", a.addr)))?;
    for (encode, sha) in [
        (
            ProducerTable::encode_script_load as fn(&mut Vec<u8>),
            SET_SCRIPT_SHA,
        ),
        (ProducerTable::encode_del_script_load, DEL_SCRIPT_SHA),
    ] {
        let mut out = Vec::new();
        encode(&mut out);
        client
            .send_raw(&out)
            .map_err(|e| Error::failed(format!("SCRIPT LOAD: {e}")))?;
        let r = client
            .read()
            .map_err(|e| Error::failed(format!("SCRIPT LOAD: {e}")))?;
        if r.as_bytes() != Some(sha.as_bytes()) {
            return Err(Error::failed(format!(
                "SCRIPT LOAD answered {r:?}, not {sha}"
            )));
        }
    }
    println!("ready");
    let table = ProducerTable::new(NEIGH_TABLE, a.db, a.separator);
    if batching {
        // The daemon's own reader: recvmmsg into slots of a ring, a cut
        // datagram read again whole.
        let ring =
            RecvRing::new(BATCH * SLOT).map_err(|e| Error::failed(format!("receive ring: {e}")))?;
        let reader = LinkReader::with_slot(sock, ring, SLOT);
        run_batching(reader, client, &table, &names, a.shared.get())
    } else {
        run(&sock, client, &table, &names, a.shared.get())
    }
}

/// The blocking floor's loop.
fn run(
    sock: &NetlinkSocket,
    mut client: Client,
    table: &ProducerTable,
    names: &HashMap<i32, Vec<u8>>,
    st: &Shared,
) -> Result<(), Error> {
    let mut buf = vec![0u8; 64 << 10];
    let mut out = Vec::with_capacity(512);
    let mut fds = [libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        wait_readable(&mut fds, st)?;
        let mut any = false;
        while let Some(n) = recv_counting(sock, &mut buf, st)? {
            any = true;
            for ((ifindex, family, addr), mac) in neighbor_states(&buf[..n]) {
                let Some(name) = names.get(&ifindex) else {
                    continue;
                };
                out.clear();
                encode_state(&mut out, table, name, family, addr, mac);
                send_and_await(&mut client, &out, 1)?;
            }
        }
        if any {
            st.idle_ns.store(monotonic_ns(), Ordering::Release);
        }
    }
}

/// A neighbor as the kernel keys it: ifindex, family, address bytes.
type Key = (i32, u8, [u8; 16]);

/// Datagrams per `recvmmsg`, and the room of each (a neighbor message is
/// ~100 bytes).
const BATCH: usize = 64;
const SLOT: usize = 8192;

/// The batching floor's loop.
fn run_batching(
    mut reader: LinkReader,
    mut client: Client,
    table: &ProducerTable,
    names: &HashMap<i32, Vec<u8>>,
    st: &Shared,
) -> Result<(), Error> {
    let counters = Counters::default();
    let mut out = Vec::with_capacity(1 << 20);
    // Each neighbor's latest state this wake-up (`None`: deleted), in
    // first-seen order; the map says where a key's slot is.
    let mut latest: Vec<(Key, Option<[u8; 6]>)> = Vec::new();
    let mut slot: HashMap<Key, usize> = HashMap::new();
    let mut fds = [libc::pollfd {
        fd: reader.socket().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        wait_readable(&mut fds, st)?;
        latest.clear();
        slot.clear();
        loop {
            let (count, drained) = match reader.read(&counters) {
                Ok(Read::Datagrams { count, drained, .. }) => (count, drained),
                Ok(Read::Empty) => break,
                Ok(Read::Overrun) => {
                    st.overruns.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(Error::failed(format!("netlink recvmmsg: {e}"))),
            };
            for i in 0..count {
                for (key, state) in neighbor_states(reader.datagram(i)) {
                    match slot.get(&key) {
                        Some(&i) => latest[i].1 = state,
                        None => {
                            slot.insert(key, latest.len());
                            latest.push((key, state));
                        }
                    }
                }
            }
            if drained {
                break;
            }
        }
        out.clear();
        let mut commands = 0;
        for &((ifindex, family, addr), mac) in &latest {
            if let Some(name) = names.get(&ifindex) {
                encode_state(&mut out, table, name, family, addr, mac);
                commands += 1;
            }
        }
        if commands == 0 {
            continue;
        }
        send_and_await(&mut client, &out, commands)?;
        st.idle_ns.store(monotonic_ns(), Ordering::Release);
    }
}

/// The address bytes of an IPv4/IPv6 destination (IPv4 in the first four).
fn address(family: u8, dst: Option<&[u8]>) -> Option<[u8; 16]> {
    let mut a = [0u8; 16];
    match (family, dst) {
        (AF_INET, Some(d)) if d.len() == 4 => a[..4].copy_from_slice(d),
        (AF_INET6, Some(d)) if d.len() == 16 => a.copy_from_slice(d),
        _ => return None,
    }
    Some(a)
}

/// The set (`mac`) or del (`None`) script for one neighbor into `out`.
fn encode_state(
    out: &mut Vec<u8>,
    table: &ProducerTable,
    name: &[u8],
    family: u8,
    addr: [u8; 16],
    mac: Option<[u8; 6]>,
) {
    let (family, ip) = if family == AF_INET {
        ("IPv4", text::ipv4([addr[0], addr[1], addr[2], addr[3]]))
    } else {
        ("IPv6", text::ipv6(addr))
    };
    let key: [&[u8]; 3] = [name, b":", ip.as_bytes()];
    match mac {
        None => table.encode_del_parts(out, &key),
        Some(mac) => {
            let mac = text::lladdr(Some(&mac));
            table.encode_set_parts(
                out,
                &key,
                &[(b"neigh", mac.as_bytes()), (b"family", family.as_bytes())],
            );
        }
    }
}

/// Each IPv4/IPv6 neighbor message of a datagram with an address (and,
/// when it sets, a 6-byte MAC): its key and state (`None`: deleted).
fn neighbor_states(datagram: &[u8]) -> impl Iterator<Item = (Key, Option<[u8; 6]>)> + '_ {
    parse::messages(datagram)
        .map_while(Result::ok)
        .filter_map(|(hdr, payload)| {
            let change = match hdr.msg_type {
                RTM_NEWNEIGH => NeighChange::New,
                RTM_DELNEIGH => NeighChange::Del,
                _ => return None,
            };
            let m = parse_neigh(change, payload).ok()?;
            let addr = address(m.family, m.dst)?;
            let mac = match change {
                NeighChange::Del => None,
                NeighChange::New => match m.lladdr {
                    Some(&[a, b, c, d, e, f]) => Some([a, b, c, d, e, f]),
                    _ => return None,
                },
            };
            Some(((m.ifindex, m.family, addr), mac))
        })
}
