//! The neighbor watcher thread: what the kernel and Redis did.
//!
//! - Counts the kernel's neighbor messages in each writer's namespace (a
//!   netlink socket of its own on `RTNLGRP_NEIGH`, drained as they come)
//!   and, when asked ([`Watcher::start`] `stamp_kernel`), stamps each of
//!   flood's neighbors as it reads its message ([`Note::Heard`]).
//! - Subscribes to the keyspace notifications of the staging hashes
//!   (`__keyspace@<db>__:_NEIGH_TABLE:*`) of each writer's database,
//!   stamps each on arrival, and reads the hash's `neigh` back
//!   ([`Note::Seen`]). Keys notified while a read is in flight are read in
//!   the next pipelined batch, once each with the stamp of their latest
//!   notification: a burst of writes costs Redis one read per key and
//!   batch, not one per notification (a ProducerStateTable set notifies
//!   one `hset` per field).
//! - Answers barriers: everything Redis notified and the kernel queued
//!   before the barrier has been counted and read back when it replies.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use syncd::engine::netlink::neigh::{parse_neigh, NeighChange, RTM_DELNEIGH, RTM_NEWNEIGH};
use syncd::engine::netlink::parse;
use syncd::engine::netlink::socket::{NetlinkSocket, Recv, RTMGRP_NEIGH};
use syncd::engine::redis::client::Client;
use syncd::engine::redis::reply::Reply;
use syncd::engine::redis::socket::poll;
use syncd::engine::sonic::dbconfig::Address;
use syncd::engine::sys::monotonic_ns;

use crate::kernel::in_netns;
use crate::neigh::plan;
use crate::signal::{EventFd, Stop};
use crate::watch::{pollfd, redis_failed, Side};
use crate::Error;

/// The staging hashes' prefix: `_NEIGH_TABLE` and APPL_DB's separator.
pub const STAGING: &str = "_NEIGH_TABLE:";
/// Receive buffer of the counting sockets: a 20,000-neighbor burst is
/// ~20 MB of queued messages (the kernel doubles what is asked).
const LISTENER_RCVBUF: usize = 32 << 20;
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
const SUBSCRIBER: &str = "neighbor keyspace subscriber";
const READS: &str = "neighbor watcher reads";

/// Where one writer's neighbors live and where it writes.
#[derive(Debug, Clone)]
pub struct WatchSide {
    pub side: Side,
    pub netns: Option<String>,
    pub db: u32,
}

/// What the watcher tells the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A staging hash of flood's neighbor `index` was notified at `at_ns`
    /// and then read: `mac` is its `neigh` (`None`: deleted, or not a MAC).
    Seen {
        side: Side,
        index: u32,
        mac: Option<[u8; 6]>,
        at_ns: u64,
    },
    /// flood's socket read the kernel's message about neighbor `index`.
    Heard {
        side: Side,
        index: u32,
        mac: Option<[u8; 6]>,
        at_ns: u64,
    },
}

/// Cumulative counts for one writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `RTM_NEWNEIGH`/`RTM_DELNEIGH` in its namespace (every neighbor).
    pub kernel_events: u64,
    /// `ENOBUFS` on the counting socket: counts are a lower bound.
    pub listener_overruns: u64,
    /// `hset` notifications of flood's staging hashes.
    pub redis_writes: u64,
    /// `del` notifications of them.
    pub redis_deletes: u64,
    /// Notifications of other staging hashes.
    pub other_writes: u64,
    /// Reads back issued (fewer than notifications: coalesced).
    pub reads: u64,
}

impl Counts {
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            kernel_events: self.kernel_events - before.kernel_events,
            listener_overruns: self.listener_overruns - before.listener_overruns,
            redis_writes: self.redis_writes - before.redis_writes,
            redis_deletes: self.redis_deletes - before.redis_deletes,
            other_writes: self.other_writes - before.other_writes,
            reads: self.reads - before.reads,
        }
    }
}

/// Handle on the watcher thread.
pub struct Watcher {
    tx: Option<Sender<Sender<[Counts; 2]>>>,
    wake: Arc<EventFd>,
    pub notes: Receiver<Note>,
    join: Option<JoinHandle<Result<(), Error>>>,
}

struct Listener {
    side: Side,
    sock: NetlinkSocket,
}

/// One writer's read-back connection.
struct Reader {
    conn: Client,
    /// Keys notified and not yet read: key → (index, latest stamp), in
    /// order of first notification.
    dirty: Vec<(Vec<u8>, u32, u64)>,
    dirty_at: HashMap<Vec<u8>, usize>,
    /// (index, stamp) of each read in flight, in order.
    in_flight: std::collections::VecDeque<(u32, u64)>,
}

impl Reader {
    fn mark(&mut self, key: &[u8], index: u32, at_ns: u64) {
        match self.dirty_at.get(key) {
            Some(&i) => self.dirty[i].2 = at_ns,
            None => {
                self.dirty_at.insert(key.to_vec(), self.dirty.len());
                self.dirty.push((key.to_vec(), index, at_ns));
            }
        }
    }

    /// Send the dirty keys' reads when none is in flight; how many.
    fn issue(&mut self) -> Result<u64, Error> {
        if !self.in_flight.is_empty() || self.dirty.is_empty() {
            return Ok(0);
        }
        let n = self.dirty.len() as u64;
        for (key, index, at) in self.dirty.drain(..) {
            self.conn.queue(&[b"HGET", &key, b"neigh"]);
            self.in_flight.push_back((index, at));
        }
        self.dirty_at.clear();
        self.conn.flush().map_err(redis_failed(READS))?;
        Ok(n)
    }
}

struct State {
    /// `__keyspace@<db>__:_NEIGH_TABLE:` per side (empty: not watched).
    channel_prefix: [Vec<u8>; 2],
    counts: [Counts; 2],
    stamp_kernel: bool,
    /// Barriers whose PONG came, each with the reads it waits for (issued
    /// plus dirty at that moment); then those still waiting for the PONG.
    barriers: std::collections::VecDeque<(Sender<[Counts; 2]>, Option<u64>)>,
    reads_answered: u64,
}

impl Watcher {
    /// Open every socket (so set-up errors are reported here) and start.
    pub fn start(
        address: &Address,
        sides: &[WatchSide],
        stamp_kernel: bool,
        stop: &Stop,
    ) -> Result<Watcher, Error> {
        let mut listeners = Vec::new();
        let mut readers: [Option<Reader>; 2] = [None, None];
        let mut channel_prefix: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut patterns = Vec::new();
        for s in sides {
            let sock = in_netns(s.netns.as_deref(), || {
                NetlinkSocket::events_in(RTMGRP_NEIGH, LISTENER_RCVBUF)
                    .map(|(sock, _)| sock)
                    .map_err(|e| Error::failed(format!("netlink neighbor socket: {e}")))
            })?;
            listeners.push(Listener { side: s.side, sock });
            let conn = Client::connect_db(address, s.db, SETUP_TIMEOUT).map_err(|e| {
                Error::failed(format!("{READS}: connecting to Redis at {address}: {e}"))
            })?;
            readers[s.side.index()] = Some(Reader {
                conn,
                dirty: Vec::new(),
                dirty_at: HashMap::new(),
                in_flight: Default::default(),
            });
            let prefix = format!("__keyspace@{}__:{STAGING}", s.db).into_bytes();
            patterns.push([prefix.as_slice(), b"*"].concat());
            channel_prefix[s.side.index()] = prefix;
        }
        let mut sub = Client::connect(address, SETUP_TIMEOUT).map_err(|e| {
            Error::failed(format!(
                "{SUBSCRIBER}: connecting to Redis at {address}: {e}"
            ))
        })?;
        let patterns: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
        sub.subscribe(b"PSUBSCRIBE", &patterns)
            .map_err(redis_failed(SUBSCRIBER))?;
        let st = State {
            channel_prefix,
            counts: [Counts::default(); 2],
            stamp_kernel,
            barriers: Default::default(),
            reads_answered: 0,
        };
        let wake = Arc::new(EventFd::new().map_err(|e| Error::failed(format!("eventfd: {e}")))?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let (notes_tx, notes) = crossbeam_channel::unbounded();
        let (thread_wake, thread_stop) = (wake.clone(), stop.clone());
        let join = std::thread::Builder::new()
            .name("flood-neigh-watch".into())
            .spawn(move || {
                let r = run(
                    st,
                    &listeners,
                    sub,
                    readers,
                    &rx,
                    &thread_wake,
                    &thread_stop,
                    &notes_tx,
                );
                if r.is_err() {
                    // Whoever waits on us must not wait for ever.
                    thread_stop.trigger();
                }
                r
            })
            .map_err(|e| Error::failed(format!("starting the watcher thread: {e}")))?;
        Ok(Watcher {
            tx: Some(tx),
            wake,
            notes,
            join: Some(join),
        })
    }

    /// Wait until everything notified and queued before now is counted and
    /// read back (its notes sent), and return the counts at that point.
    pub fn barrier(&mut self, stop: &Stop) -> Result<[Counts; 2], Error> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        if !matches!(self.tx.as_ref().map(|tx| tx.send(reply_tx)), Some(Ok(()))) {
            return Err(self.failure());
        }
        self.wake.notify();
        select! {
            recv(reply_rx) -> r => match r {
                Ok(counts) => Ok(counts),
                Err(_) => Err(self.failure()),
            },
            recv(stop.channel()) -> _ => Err(self.join().err().unwrap_or(Error::Interrupted)),
            recv(crossbeam_channel::after(Duration::from_secs(60))) -> _ => Err(Error::failed(
                "neighbor watcher: a barrier took over 60 s (Redis or the kernel stalled)")),
        }
    }

    fn failure(&mut self) -> Error {
        self.join()
            .err()
            .unwrap_or_else(|| Error::failed("the neighbor watcher thread is gone"))
    }

    fn join(&mut self) -> Result<(), Error> {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::failed("the neighbor watcher thread panicked")),
            None => Ok(()),
        }
    }

    /// The thread's error, if it ended with one.
    pub fn check(&mut self) -> Result<(), Error> {
        match self.join.as_ref() {
            Some(j) if j.is_finished() => self.join(),
            _ => Ok(()),
        }
    }

    /// Stop the thread (the caller triggered `stop`) and collect its result.
    pub fn finish(mut self) -> Result<(), Error> {
        self.tx = None;
        self.join()
    }
}

impl State {
    /// One `pmessage` (or a barrier's PONG) from the subscriber.
    fn on_notification(&mut self, r: &Reply<'_>, at_ns: u64, readers: &mut [Option<Reader>; 2]) {
        let Reply::Array(items) = r else { return };
        match items.first().and_then(|i| i.as_bytes()) {
            Some(b"pong") => {
                let dirty: u64 = readers.iter().flatten().map(|r| r.dirty.len() as u64).sum();
                let issued = self.counts[0].reads + self.counts[1].reads + dirty;
                if let Some(b) = self.barriers.iter_mut().find(|b| b.1.is_none()) {
                    b.1 = Some(issued);
                }
                return;
            }
            Some(b"pmessage") if items.len() == 4 => {}
            _ => return,
        }
        let (Some(channel), Some(event)) = (items[2].as_bytes(), items[3].as_bytes()) else {
            return;
        };
        for side in Side::ALL {
            let i = side.index();
            if self.channel_prefix[i].is_empty() {
                continue;
            }
            let Some(key) = channel.strip_prefix(self.channel_prefix[i].as_slice()) else {
                continue;
            };
            let c = &mut self.counts[i];
            let Some(index) = plan::index_of_key(key) else {
                c.other_writes += 1;
                return;
            };
            match event {
                b"hset" => c.redis_writes += 1,
                b"del" => c.redis_deletes += 1,
                _ => return,
            }
            if let Some(reader) = readers[i].as_mut() {
                let staging = &channel[self.channel_prefix[i].len() - STAGING.len()..];
                reader.mark(staging, index, at_ns);
            }
            return;
        }
    }

    /// Count (and stamp, when asked) every neighbor message queued.
    fn drain_kernel(
        &mut self,
        listeners: &[Listener],
        buf: &mut [u8],
        notes: &Sender<Note>,
    ) -> Result<(), Error> {
        for l in listeners {
            loop {
                let n = match l.sock.recv(buf) {
                    Ok(Recv::Data(n)) => n.min(buf.len()),
                    Ok(Recv::WouldBlock) => break,
                    Ok(Recv::Overrun) => {
                        self.counts[l.side.index()].listener_overruns += 1;
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::failed(format!(
                            "neighbor watcher: netlink recv ({} namespace): {e}",
                            l.side.name()
                        )))
                    }
                };
                let now = monotonic_ns();
                for msg in parse::messages(&buf[..n]) {
                    let Ok((hdr, payload)) = msg else { break };
                    let change = match hdr.msg_type {
                        RTM_NEWNEIGH => NeighChange::New,
                        RTM_DELNEIGH => NeighChange::Del,
                        _ => continue,
                    };
                    self.counts[l.side.index()].kernel_events += 1;
                    if !self.stamp_kernel {
                        continue;
                    }
                    let Ok(m) = parse_neigh(change, payload) else {
                        continue;
                    };
                    let Some(index) = m.dst.and_then(plan::index_of_bytes) else {
                        continue;
                    };
                    let mac = match (change, m.lladdr) {
                        (NeighChange::New, Some(l)) => <[u8; 6]>::try_from(l).ok(),
                        _ => None,
                    };
                    let _ = notes.send(Note::Heard {
                        side: l.side,
                        index,
                        mac,
                        at_ns: now,
                    });
                }
            }
        }
        Ok(())
    }
}

/// One `HGET neigh` reply of `side`.
fn on_read(side: Side, pending: Option<(u32, u64)>, r: &Reply<'_>, notes: &Sender<Note>) {
    let Some((index, at_ns)) = pending else {
        return;
    };
    let mac = r.as_bytes().and_then(plan::parse_mac);
    let _ = notes.send(Note::Seen {
        side,
        index,
        mac,
        at_ns,
    });
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut st: State,
    listeners: &[Listener],
    mut sub: Client,
    mut readers: [Option<Reader>; 2],
    rx: &Receiver<Sender<[Counts; 2]>>,
    wake: &EventFd,
    stop: &Stop,
    notes: &Sender<Note>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; 64 << 10];
    let reader_fd = |r: &Option<Reader>| r.as_ref().map(|r| r.conn.as_raw_fd()).unwrap_or(-1);
    loop {
        // Fixed slots: 0 stop, 1 wake, 2 subscriber, 3..5 readers, then kernel.
        let mut fds = vec![
            pollfd(stop.fd()),
            pollfd(wake.fd()),
            pollfd(sub.as_raw_fd()),
            pollfd(reader_fd(&readers[0])),
            pollfd(reader_fd(&readers[1])),
        ];
        fds.extend(listeners.iter().map(|l| pollfd(l.sock.as_raw_fd())));
        poll(&mut fds, None).map_err(|e| Error::failed(format!("neighbor watcher: poll: {e}")))?;
        if fds[0].revents != 0 {
            return Ok(());
        }
        // Notifications first (latency's end stamp), stamped right after
        // the read: a stamp taken before it could precede data that
        // arrived during it. Then the kernel, each datagram stamped as read.
        if fds[2].revents != 0 {
            sub.fill().map_err(redis_failed(SUBSCRIBER))?;
            let now = monotonic_ns();
            while let Some(r) = sub.next_reply().map_err(redis_failed(SUBSCRIBER))? {
                st.on_notification(&r, now, &mut readers);
            }
        }
        st.drain_kernel(listeners, &mut buf, notes)?;
        for side in Side::ALL {
            let Some(reader) = readers[side.index()].as_mut() else {
                continue;
            };
            if fds[3 + side.index()].revents != 0 {
                reader.conn.fill().map_err(redis_failed(READS))?;
                while let Some(r) = reader.conn.next_reply().map_err(redis_failed(READS))? {
                    on_read(side, reader.in_flight.pop_front(), &r, notes);
                    st.reads_answered += 1;
                }
            }
            st.counts[side.index()].reads += reader.issue()?;
        }
        if fds[1].revents != 0 {
            wake.clear();
            while let Ok(reply) = rx.try_recv() {
                st.barriers.push_back((reply, None));
                // In subscribed mode PING is answered in order with the
                // notifications: its PONG comes after every one before it.
                sub.queue(&[b"PING"]);
            }
            sub.flush().map_err(redis_failed(SUBSCRIBER))?;
        }
        while let Some((_, Some(wanted))) = st.barriers.front() {
            if st.reads_answered < *wanted {
                break;
            }
            st.drain_kernel(listeners, &mut buf, notes)?;
            if let Some((reply, _)) = st.barriers.pop_front() {
                let _ = reply.send(st.counts);
            }
        }
    }
}
