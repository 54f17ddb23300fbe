//! The neighbor floor: the least any neighsyncd can do per neighbor
//! message, measured the same way as the daemon. Wait for the netlink
//! socket (`RTNLGRP_NEIGH`), read one datagram, and for each IPv4/IPv6
//! neighbor message send the ProducerStateTable `EVALSHA` SONiC sends
//! (the daemon's own encoder and address text, so the bytes are
//! identical: set with `neigh` and `family`, or del) on a blocking
//! connection, wait for the reply, next. No SONiC rules beyond the family,
//! no batching, no resync after an overrun.
//!
//! Like portsyncd's floor it is its own process (flood re-executed as
//! `flood __neigh-floor`, started by [`crate::floor::Floor::start`] with
//! [`crate::floor::FloorKind::Neigh`]) in a twin namespace holding the
//! same ports and neighbors, writing to its own database.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use syncd::engine::netlink::neigh::{
    parse_neigh, NeighChange, AF_INET, AF_INET6, RTM_DELNEIGH, RTM_NEWNEIGH,
};
use syncd::engine::netlink::parse;
use syncd::engine::netlink::socket::{NetlinkSocket, Recv, RTMGRP_NEIGH};
use syncd::engine::redis::client::Client;
use syncd::engine::redis::socket;
use syncd::engine::sonic::pst::{ProducerTable, DEL_SCRIPT_SHA, SET_SCRIPT_SHA};
use syncd::engine::sys::monotonic_ns;
use syncd::neigh::keys::NEIGH_TABLE;
use syncd::neigh::text;

use crate::floor::{FloorArgs, Shared, RCVBUF};
use crate::kernel::{in_netns, Requests};
use crate::Error;

/// `flood __neigh-floor NETNS ADDRESS DB SEPARATOR SHM`: the floor process.
pub fn main(args: &[String]) -> u8 {
    match floor_main(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flood neighbor floor: {e}");
            1
        }
    }
}

fn floor_main(args: &[String]) -> Result<(), Error> {
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
    run(&sock, client, &table, &names, a.shared.get())
}

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
        socket::poll(&mut fds, None).map_err(|e| Error::failed(format!("poll: {e}")))?;
        let mut any = false;
        loop {
            let n = match sock.recv(&mut buf) {
                Ok(Recv::Data(n)) => n.min(buf.len()),
                Ok(Recv::WouldBlock) => break,
                Ok(Recv::Overrun) => {
                    st.overruns.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(Error::failed(format!("netlink recv: {e}"))),
            };
            any = true;
            for msg in parse::messages(&buf[..n]) {
                let Ok((hdr, payload)) = msg else { break };
                let change = match hdr.msg_type {
                    RTM_NEWNEIGH => NeighChange::New,
                    RTM_DELNEIGH => NeighChange::Del,
                    _ => continue,
                };
                let Ok(m) = parse_neigh(change, payload) else {
                    continue;
                };
                out.clear();
                if !encode(&mut out, table, names, &m) {
                    continue;
                }
                client
                    .send_raw(&out)
                    .map_err(|e| Error::failed(format!("write to Redis: {e}")))?;
                let reply = client
                    .read()
                    .map_err(|e| Error::failed(format!("Redis reply: {e}")))?;
                if let Some(e) = reply.error() {
                    return Err(Error::failed(format!("Redis refused a write: {e}")));
                }
            }
        }
        if any {
            st.idle_ns.store(monotonic_ns(), Ordering::Release);
        }
    }
}

/// The `EVALSHA` for one neighbor message into `out`; `false` when the
/// message is not an IPv4/IPv6 neighbor with an address (and, to set, a
/// 6-byte MAC), or its link is unknown.
fn encode(
    out: &mut Vec<u8>,
    table: &ProducerTable,
    names: &HashMap<i32, Vec<u8>>,
    m: &syncd::engine::netlink::neigh::NeighMessage<'_>,
) -> bool {
    let (family, ip) = match (m.family, m.dst) {
        (AF_INET, Some(d)) if d.len() == 4 => ("IPv4", text::ipv4([d[0], d[1], d[2], d[3]])),
        (AF_INET6, Some(d)) if d.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(d);
            ("IPv6", text::ipv6(a))
        }
        _ => return false,
    };
    let Some(name) = names.get(&m.ifindex) else {
        return false;
    };
    let key: [&[u8]; 3] = [name, b":", ip.as_bytes()];
    match m.change {
        NeighChange::Del => table.encode_del_parts(out, &key),
        NeighChange::New => {
            let Some(mac) = m.lladdr.filter(|l| l.len() == 6) else {
                return false;
            };
            let mac = text::lladdr(Some(mac));
            table.encode_set_parts(
                out,
                &key,
                &[(b"neigh", mac.as_bytes()), (b"family", family.as_bytes())],
            );
        }
    }
    true
}
