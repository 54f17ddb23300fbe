//! The watcher thread: what the kernel and Redis did.
//!
//! - Counts the kernel's link messages in each namespace (a netlink socket
//!   of its own there, like the daemon's).
//! - Subscribes to STATE_DB `PORT_TABLE` keyspace notifications of both
//!   writers (`__keyspace@<db>__:PORT_TABLE|*`), stamps each on arrival,
//!   reads the hash right after (a pipelined `HMGET` on a second
//!   connection) and matches the write to the change it shows
//!   ([`Phase::on_write`]).
//! - Answers barriers: everything Redis notified and the kernel queued
//!   before the barrier has been counted and matched when it replies.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{select, Receiver, Sender};
use syncd::engine::netlink::parse::{self, LinkChange, RTM_DELLINK, RTM_NEWLINK};
use syncd::engine::netlink::socket::{NetlinkSocket, Recv};
use syncd::engine::redis::client::{Client, ClientError};
use syncd::engine::redis::reply::Reply;
use syncd::engine::redis::socket::poll;
use syncd::engine::sonic::dbconfig::Address;
use syncd::engine::sys::monotonic_ns;
use syncd::port::rules::is_port_name;

use crate::kernel::in_netns;
use crate::plan::Phase;
use crate::signal::{EventFd, Stop};
use crate::Error;

/// Which writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Daemon = 0,
    Floor = 1,
}

impl Side {
    pub const ALL: [Side; 2] = [Side::Daemon, Side::Floor];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Daemon => "daemon",
            Side::Floor => "floor",
        }
    }
}

/// Where one writer's ports live and where it writes.
#[derive(Debug, Clone)]
pub struct SideConfig {
    pub side: Side,
    pub netns: Option<String>,
    pub address: Address,
    pub db: u32,
    pub separator: u8,
}

/// Cumulative counts for one writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `RTM_NEWLINK`/`RTM_DELLINK` in its namespace (all links).
    pub kernel_events: u64,
    /// Of those, for `Ethernet*`/`PortChannel*` names.
    pub kernel_port_events: u64,
    /// `ENOBUFS` on our own counting socket: counts are a lower bound.
    pub listener_overruns: u64,
    /// `hset` notifications of `PORT_TABLE` keys.
    pub redis_writes: u64,
    /// `del` notifications.
    pub redis_deletes: u64,
}

impl Counts {
    /// What was counted since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            kernel_events: self.kernel_events - before.kernel_events,
            kernel_port_events: self.kernel_port_events - before.kernel_port_events,
            listener_overruns: self.listener_overruns - before.listener_overruns,
            redis_writes: self.redis_writes - before.redis_writes,
            redis_deletes: self.redis_deletes - before.redis_deletes,
        }
    }
}

/// One STATE_DB write as read back right after its notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub side: Side,
    pub port: u32,
    pub admin: bool,
    pub oper: bool,
    pub mtu: u32,
    /// When its notification arrived.
    pub at_ns: u64,
}

/// What a barrier changes once everything before it is accounted for.
pub struct Barrier {
    /// Match this side's writes against this phase from now on.
    pub install: Option<(Side, Arc<Phase>)>,
    /// Stop matching this side's writes.
    pub clear: Option<Side>,
    /// Watch the kernel sockets all the time (bursts: they would overrun
    /// if drained only when Redis wakes us), not only after notifications.
    pub live_kernel: bool,
}

struct BarrierCmd {
    barrier: Barrier,
    reply: Sender<[Counts; 2]>,
}

/// Handle on the watcher thread.
pub struct Watcher {
    tx: Option<Sender<BarrierCmd>>,
    wake: Arc<EventFd>,
    /// Every write read back, in order.
    pub seen: Receiver<Seen>,
    join: Option<JoinHandle<Result<(), Error>>>,
}

struct Listener {
    side: Side,
    sock: NetlinkSocket,
}

struct Reader {
    conn: Client,
    /// (port, notified at) of each read in flight, in order.
    pending: VecDeque<(u32, u64)>,
}

struct State {
    names: HashMap<Vec<u8>, u32>,
    /// `__keyspace@<db>__:` and `PORT_TABLE<sep>` per side.
    channel_prefix: [Vec<u8>; 2],
    table_prefix: [Vec<u8>; 2],
    counts: [Counts; 2],
    phases: [Option<(Arc<Phase>, Vec<usize>)>; 2],
    live_kernel: bool,
    reads_issued: u64,
    reads_answered: u64,
    /// Barriers waiting: (command, reads issued when its PONG came).
    barriers: VecDeque<(BarrierCmd, Option<u64>)>,
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The connections' roles, for messages.
const SUBSCRIBER: &str = "keyspace subscriber";
const READS: &str = "watcher reads";

/// A failure of the Redis connection `role`, for messages.
pub fn redis_failed(role: &'static str) -> impl Fn(ClientError) -> Error {
    move |e| Error::failed(format!("{role}: {e}"))
}
/// Receive buffer of the counting sockets (the kernel doubles it).
const LISTENER_RCVBUF: usize = 16 << 20;

impl Watcher {
    /// Open every socket (so set-up errors are reported here) and start.
    pub fn start(ports: &[String], sides: &[SideConfig], stop: &Stop) -> Result<Watcher, Error> {
        let mut listeners = Vec::new();
        let mut readers: [Option<Reader>; 2] = [None, None];
        let mut channel_prefix: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut table_prefix: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut sub: Option<Client> = None;
        let mut patterns = Vec::new();
        for s in sides {
            let sock = in_netns(s.netns.as_deref(), || {
                NetlinkSocket::events(LISTENER_RCVBUF)
                    .map(|(sock, _)| sock)
                    .map_err(|e| Error::failed(format!("netlink event socket: {e}")))
            })?;
            listeners.push(Listener { side: s.side, sock });
            let conn = Client::connect_db(&s.address, s.db, SETUP_TIMEOUT).map_err(|e| {
                Error::failed(format!(
                    "{READS}: connecting to Redis at {}: {e}",
                    s.address
                ))
            })?;
            readers[s.side.index()] = Some(Reader {
                conn,
                pending: VecDeque::new(),
            });
            channel_prefix[s.side.index()] = format!("__keyspace@{}__:", s.db).into_bytes();
            table_prefix[s.side.index()] = [&b"PORT_TABLE"[..], &[s.separator]].concat();
            let mut pattern = channel_prefix[s.side.index()].clone();
            pattern.extend_from_slice(&table_prefix[s.side.index()]);
            pattern.push(b'*');
            patterns.push(pattern);
            if sub.is_none() {
                sub = Some(Client::connect(&s.address, SETUP_TIMEOUT).map_err(|e| {
                    Error::failed(format!(
                        "{SUBSCRIBER}: connecting to Redis at {}: {e}",
                        s.address
                    ))
                })?);
            }
        }
        let Some(mut sub) = sub else {
            return Err(Error::failed("watcher: nothing to watch"));
        };
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
        sub.subscribe(b"PSUBSCRIBE", &patterns)
            .map_err(redis_failed(SUBSCRIBER))?;

        let names = ports
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_bytes().to_vec(), i as u32))
            .collect();
        let state = State {
            names,
            channel_prefix,
            table_prefix,
            counts: [Counts::default(); 2],
            phases: [None, None],
            live_kernel: false,
            reads_issued: 0,
            reads_answered: 0,
            barriers: VecDeque::new(),
        };
        let wake = Arc::new(EventFd::new().map_err(|e| Error::failed(format!("eventfd: {e}")))?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        let thread_wake = wake.clone();
        let thread_stop = stop.clone();
        let join = std::thread::Builder::new()
            .name("flood-watch".into())
            .spawn(move || {
                let r = run(
                    state,
                    listeners,
                    sub,
                    readers,
                    rx,
                    &thread_wake,
                    &thread_stop,
                    seen_tx,
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
            seen,
            join: Some(join),
        })
    }

    /// Wait until everything before now is counted and matched, apply
    /// `barrier`, and return the counts at that point.
    pub fn barrier(&mut self, barrier: Barrier, stop: &Stop) -> Result<[Counts; 2], Error> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let sent = self.tx.as_ref().map(|tx| {
            tx.send(BarrierCmd {
                barrier,
                reply: reply_tx,
            })
        });
        if !matches!(sent, Some(Ok(()))) {
            return Err(self.failure());
        }
        self.wake.notify();
        select! {
            recv(reply_rx) -> r => match r {
                Ok(counts) => Ok(counts),
                Err(_) => Err(self.join().err().unwrap_or(Error::Interrupted)),
            },
            recv(stop.channel()) -> _ => Err(Error::Interrupted),
            recv(crossbeam_channel::after(Duration::from_secs(60))) -> _ => Err(Error::failed(
                "watcher: a barrier took over 60 s (Redis or the kernel stalled)")),
        }
    }

    /// Why the thread is gone.
    fn failure(&mut self) -> Error {
        self.join()
            .err()
            .unwrap_or_else(|| Error::failed("the watcher thread is gone"))
    }

    /// Wait for the thread to end (it ends on stop) and return its result.
    pub fn join(&mut self) -> Result<(), Error> {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(Error::failed("the watcher thread panicked")),
            None => Ok(()),
        }
    }

    /// Whether the thread ended with an error; its error.
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

fn parse_bool(v: Option<&[u8]>) -> Option<bool> {
    match v? {
        b"up" => Some(true),
        b"down" => Some(false),
        _ => None,
    }
}

fn parse_u32(v: Option<&[u8]>) -> Option<u32> {
    std::str::from_utf8(v?).ok()?.parse().ok()
}

impl State {
    /// One `pmessage` (or the PONG of a barrier) from the subscriber.
    fn on_notification(
        &mut self,
        r: &Reply<'_>,
        at_ns: u64,
        readers: &mut [Option<Reader>; 2],
    ) -> Result<(), Error> {
        let Reply::Array(items) = r else {
            return Ok(());
        };
        match items.first().and_then(|i| i.as_bytes()) {
            Some(b"pong") => {
                let issued = self.reads_issued;
                if let Some(b) = self.barriers.iter_mut().find(|b| b.1.is_none()) {
                    b.1 = Some(issued);
                }
                return Ok(());
            }
            Some(b"pmessage") if items.len() == 4 => {}
            _ => return Ok(()),
        }
        let (Some(channel), Some(event)) = (items[2].as_bytes(), items[3].as_bytes()) else {
            return Ok(());
        };
        for side in Side::ALL {
            let i = side.index();
            // An empty prefix: a side not watched (no floor).
            if self.channel_prefix[i].is_empty() {
                continue;
            }
            let Some(key) = channel.strip_prefix(self.channel_prefix[i].as_slice()) else {
                continue;
            };
            let Some(name) = key.strip_prefix(self.table_prefix[i].as_slice()) else {
                return Ok(());
            };
            let Some(&port) = self.names.get(name) else {
                return Ok(());
            };
            match event {
                b"hset" => {
                    self.counts[i].redis_writes += 1;
                    if let Some(reader) = readers[i].as_mut() {
                        reader.conn.queue(&[
                            b"HMGET",
                            key,
                            b"admin_status",
                            b"netdev_oper_status",
                            b"mtu",
                        ]);
                        reader.pending.push_back((port, at_ns));
                        self.reads_issued += 1;
                    }
                }
                b"del" => self.counts[i].redis_deletes += 1,
                _ => {}
            }
            return Ok(());
        }
        Ok(())
    }

    /// One `HMGET` reply: report the write and match it.
    fn on_read(
        &mut self,
        side: Side,
        pending: &mut VecDeque<(u32, u64)>,
        r: &Reply<'_>,
        seen: &Sender<Seen>,
    ) {
        let Some((port, at_ns)) = pending.pop_front() else {
            return;
        };
        self.reads_answered += 1;
        let Reply::Array(items) = r else { return };
        let field = |k: usize| items.get(k).and_then(|v| v.as_bytes());
        let (Some(admin), Some(oper), Some(mtu)) = (
            parse_bool(field(0)),
            parse_bool(field(1)),
            parse_u32(field(2)),
        ) else {
            // Deleted again before we read it.
            return;
        };
        if let Some((phase, cursors)) = self.phases[side.index()].as_mut() {
            if let Some(cursor) = cursors.get_mut(port as usize) {
                phase.on_write(port, admin, mtu, at_ns, cursor);
            }
        }
        let _ = seen.send(Seen {
            side,
            port,
            admin,
            oper,
            mtu,
            at_ns,
        });
    }

    /// Count every link message queued on the counting sockets.
    fn drain_kernel(&mut self, listeners: &[Listener], buf: &mut [u8]) -> Result<(), Error> {
        for l in listeners {
            let c = &mut self.counts[l.side.index()];
            loop {
                match l.sock.recv(buf) {
                    Ok(Recv::Data(n)) => {
                        for msg in parse::messages(&buf[..n.min(buf.len())]) {
                            let Ok((hdr, payload)) = msg else { break };
                            let change = match hdr.msg_type {
                                RTM_NEWLINK => LinkChange::New,
                                RTM_DELLINK => LinkChange::Del,
                                _ => continue,
                            };
                            c.kernel_events += 1;
                            if let Ok(link) = parse::parse_link(change, payload) {
                                if is_port_name(link.name) {
                                    c.kernel_port_events += 1;
                                }
                            }
                        }
                    }
                    Ok(Recv::WouldBlock) => break,
                    Ok(Recv::Overrun) => c.listener_overruns += 1,
                    Err(e) => {
                        return Err(Error::failed(format!(
                            "watcher: netlink recv ({} namespace): {e}",
                            l.side.name()
                        )))
                    }
                }
            }
        }
        Ok(())
    }

    /// Answer every barrier whose PONG came and whose reads are answered.
    fn complete_barriers(
        &mut self,
        listeners: &[Listener],
        buf: &mut [u8],
        n_ports: usize,
    ) -> Result<(), Error> {
        while let Some((_, Some(issued))) = self.barriers.front() {
            if self.reads_answered < *issued {
                return Ok(());
            }
            self.drain_kernel(listeners, buf)?;
            let Some((cmd, _)) = self.barriers.pop_front() else {
                break;
            };
            let b = cmd.barrier;
            if let Some(side) = b.clear {
                self.phases[side.index()] = None;
            }
            if let Some((side, phase)) = b.install {
                self.phases[side.index()] = Some((phase, vec![0; n_ports]));
            }
            self.live_kernel = b.live_kernel;
            let _ = cmd.reply.send(self.counts);
        }
        Ok(())
    }
}

/// Wait for `fd` to be readable.
pub fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    mut st: State,
    listeners: Vec<Listener>,
    mut sub: Client,
    mut readers: [Option<Reader>; 2],
    rx: Receiver<BarrierCmd>,
    wake: &EventFd,
    stop: &Stop,
    seen: Sender<Seen>,
) -> Result<(), Error> {
    let n_ports = st.names.len();
    let mut buf = vec![0u8; 64 << 10];
    // Fixed slots: 0 stop, 1 wake, 2 subscriber, 3..5 readers, then kernel.
    let reader_fd = |r: &Option<Reader>| r.as_ref().map(|r| r.conn.as_raw_fd()).unwrap_or(-1);
    loop {
        let mut fds = vec![
            pollfd(stop.fd()),
            pollfd(wake.fd()),
            pollfd(sub.as_raw_fd()),
            pollfd(reader_fd(&readers[0])),
            pollfd(reader_fd(&readers[1])),
        ];
        if st.live_kernel {
            fds.extend(listeners.iter().map(|l| pollfd(l.sock.as_raw_fd())));
        }
        poll(&mut fds, None).map_err(|e| Error::failed(format!("watcher: poll: {e}")))?;
        if fds[0].revents != 0 {
            return Ok(());
        }
        // Notifications first, and stamped right after the read: a stamp
        // taken before it could precede data that arrived during it (then
        // a write would seem to come before its own change was sent).
        if fds[2].revents != 0 {
            sub.fill().map_err(redis_failed(SUBSCRIBER))?;
            let now = monotonic_ns();
            while let Some(r) = sub.next_reply().map_err(redis_failed(SUBSCRIBER))? {
                st.on_notification(&r, now, &mut readers)?;
            }
        }
        for side in Side::ALL {
            if fds[3 + side.index()].revents == 0 {
                continue;
            }
            if let Some(Reader { conn, pending }) = readers[side.index()].as_mut() {
                conn.fill().map_err(redis_failed(READS))?;
                while let Some(r) = conn.next_reply().map_err(redis_failed(READS))? {
                    st.on_read(side, pending, &r, &seen);
                }
            }
        }
        for r in readers.iter_mut().flatten() {
            // Nothing queued costs nothing.
            r.conn.flush().map_err(redis_failed(READS))?;
        }
        if fds[1].revents != 0 {
            wake.clear();
            while let Ok(cmd) = rx.try_recv() {
                st.barriers.push_back((cmd, None));
                // In subscribed mode PING is answered in order with the
                // notifications: its PONG comes after every one before it.
                sub.queue(&[b"PING"]);
            }
            sub.flush().map_err(redis_failed(SUBSCRIBER))?;
        }
        st.drain_kernel(&listeners, &mut buf)?;
        st.complete_barriers(&listeners, &mut buf, n_ports)?;
    }
}
