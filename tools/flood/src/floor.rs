//! The floor: the least any portsyncd can do per link message, measured the
//! same way as the daemon. Wait for the netlink socket, read one message,
//! send one `HSET` of the same four fields (the daemon's own encoder, so
//! the bytes are identical) on a blocking connection, wait for the reply,
//! next. No batching, no membership check, no resync after an overrun.
//!
//! That blocking floor is the latency mode's reference. In the burst and
//! rate modes, where a writer that waits for each reply falls behind (its
//! latency is the queue's), flood switches the same process to batching
//! ([`Shared::batching`]): each wake-up reads every datagram queued, keeps
//! each port's latest state, and sends one pipelined batch (one `HSET` or
//! `DEL` per port), then reads the replies. That is the least a writer that
//! keeps up can do, and what the daemon's bursts are judged against.
//!
//! It runs as its own process (flood re-executed as `flood __floor`), like
//! the daemon: a thread of flood would share an address space with flood's
//! other threads and wake up more cheaply than the daemon can. Its counters
//! live in a small shared mapping (a memfd) that flood reads.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memmap2::MmapMut;
use syncd::engine::netlink::parse::{self, Event, LinkChange, LinkMessage};
use syncd::engine::netlink::socket::{NetlinkSocket, Recv};
use syncd::engine::redis::client::Client;
use syncd::engine::redis::{encode, socket};
use syncd::engine::runtime::config::Sched;
use syncd::engine::sonic::dbconfig::Address;
use syncd::engine::sys::{cvt, monotonic_ns};
use syncd::port::rules::{is_port_name, LinkStatus};

use crate::kernel::in_netns;
use crate::Error;

/// The floor's netlink receive buffer: the daemon's default, so both
/// overrun at the same backlog.
pub const RCVBUF: usize = 16 << 20;
/// How long the floor may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters the floor process keeps for flood.
#[repr(C)]
#[derive(Default)]
pub struct Shared {
    /// Last time it had read everything queued (monotonic ns; the clock is
    /// system-wide).
    pub idle_ns: AtomicU64,
    /// `ENOBUFS` seen: messages the floor never got.
    pub overruns: AtomicU64,
    /// Set by flood: 1 = batch per wake-up (burst, rate), 0 = one blocking
    /// write per message (latency). Read at each wake-up.
    pub batching: AtomicU64,
    /// Set by flood for the floor's phases with `--floor busy`: 1 = spin
    /// on zero-timeout polls instead of sleeping in one.
    pub busy: AtomicU64,
}

/// A shared mapping holding one [`Shared`].
pub struct SharedMap {
    map: MmapMut,
}

impl SharedMap {
    /// The floor process's side: map the memfd flood passed as `path`.
    pub fn open(path: &str) -> Result<SharedMap, Error> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::failed(format!("opening {path}: {e}")))?;
        // SAFETY: as in `SharedMap::map`; flood created and sized the memfd.
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| Error::failed(format!("mapping {path}: {e}")))?;
        Ok(SharedMap { map })
    }

    fn map(file: &File) -> Result<SharedMap, Error> {
        file.set_len(4096)
            .map_err(|e| Error::failed(format!("floor: sizing shared memory: {e}")))?;
        // SAFETY: the file is a private memfd of flood and its floor; both
        // only ever access it through the atomics of `Shared`.
        let map = unsafe { MmapMut::map_mut(file) }
            .map_err(|e| Error::failed(format!("floor: mapping shared memory: {e}")))?;
        Ok(SharedMap { map })
    }

    pub fn get(&self) -> &Shared {
        // SAFETY: the mapping is page-aligned and 4096 bytes, larger than
        // `Shared`; all-zero bytes (a fresh memfd) are valid atomics; the
        // atomics are lock-free, so sharing them between processes is
        // sound; the reference lives no longer than `self.map`.
        unsafe { &*(self.map.as_ptr() as *const Shared) }
    }
}

/// Which floor: portsyncd's (link messages → STATE_DB `HSET`) or
/// neighsyncd's (neighbor messages → APPL_DB ProducerStateTable
/// `EVALSHA`, see [`crate::neigh::floor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    Port,
    /// One blocking `EVALSHA` per neighbor message (latency).
    Neigh,
    /// Neighbor messages batched per wake-up (bursts).
    NeighBatching,
}

impl FloorKind {
    /// The hidden subcommand flood re-executes itself with.
    pub fn command(self) -> &'static str {
        match self {
            FloorKind::Port => "__floor",
            FloorKind::Neigh => "__neigh-floor",
            FloorKind::NeighBatching => "__neigh-floor-batching",
        }
    }
}

/// The running floor process.
pub struct Floor {
    child: Child,
    shared: SharedMap,
    /// Keeps the memfd alive for the child to open.
    _memfd: File,
}

impl Floor {
    /// Start `flood __floor` (or `__neigh-floor`) writing to database `db`
    /// from `netns`'s events; returns once its socket and connection are
    /// open.
    pub fn start(
        kind: FloorKind,
        netns: &str,
        addr: &Address,
        db: u32,
        separator: u8,
    ) -> Result<Floor, Error> {
        let name = c"flood-floor";
        // SAFETY: memfd_create(2) with a valid C string; the fd is checked,
        // then owned.
        let raw = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) } as isize)
            .map_err(|e| Error::failed(format!("floor: memfd_create: {e}")))?;
        // SAFETY: `raw` is a fresh fd owned by no one else.
        let memfd = File::from(unsafe { OwnedFd::from_raw_fd(raw as i32) });
        let shared = SharedMap::map(&memfd)?;
        let exe = std::env::current_exe()
            .map_err(|e| Error::failed(format!("locating the flood binary: {e}")))?;
        // Address's Display is the form `parse_address` reads back.
        let addr_arg = addr.to_string();
        let mut cmd = Command::new(exe);
        cmd.arg(kind.command())
            .arg(netns)
            .arg(addr_arg)
            .arg(db.to_string())
            .arg((separator as char).to_string())
            .arg(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                memfd.as_raw_fd()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0);
        // SAFETY: runs in the child between fork and exec and only calls
        // prctl(2), which is async-signal-safe: the floor dies with flood.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::failed(format!("starting the floor process: {e}")))?;
        // It says "ready" once listening; anything else (EOF) is a failure,
        // already explained on our shared stderr.
        let Some(out) = child.stdout.take() else {
            return Err(Error::failed("floor: no stdout"));
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut floor = Floor {
            child,
            shared,
            _memfd: memfd,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.trim() == "ready" => Ok(floor),
            Ok(_) => {
                let status = floor
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                Err(Error::failed(format!(
                    "the floor process failed to start ({status})"
                )))
            }
            Err(_) => Err(Error::failed(format!(
                "the floor process did not start within {START_TIMEOUT:?}"
            ))),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Pin the floor to `cpu` and give it `sched`, as the daemon's
    /// `runtime.cpu` and `runtime.sched` do for its loop thread (the floor
    /// has one thread), so that both writers are placed alike.
    pub fn place(&self, cpu: Option<usize>, sched: Option<Sched>) -> Result<(), Error> {
        use syncd::engine::runtime::placement;
        let pid = self.pid();
        if let Some(cpu) = cpu {
            placement::pin(pid, "--floor-cpu", cpu).map_err(|e| Error::Usage(e.to_string()))?;
        }
        if let Some(sched) = sched {
            placement::set_scheduler_of(pid, "--floor-sched", sched)
                .map_err(|e| Error::failed(e.to_string()))?;
        }
        Ok(())
    }

    pub fn shared(&self) -> &Shared {
        self.shared.get()
    }

    /// An error if the floor process has died.
    pub fn check(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::failed(format!(
                "the floor process died during the run ({status})"
            ))),
            Err(e) => Err(Error::failed(format!("waiting for the floor process: {e}"))),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flood __floor NETNS ADDRESS DB SEPARATOR SHM`: the floor process.
pub fn main(args: &[String]) -> u8 {
    match floor_main(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flood floor: {e}");
            1
        }
    }
}

/// What flood passes a floor process: `NETNS ADDRESS DB SEPARATOR SHM`.
pub struct FloorArgs {
    pub netns: String,
    pub addr: Address,
    pub db: u32,
    pub separator: u8,
    pub shared: SharedMap,
}

impl FloorArgs {
    pub fn parse(args: &[String]) -> Result<FloorArgs, Error> {
        let [netns, addr, db, sep, shm] = args else {
            return Err(Error::failed(format!("bad arguments {args:?}")));
        };
        Ok(FloorArgs {
            netns: netns.clone(),
            addr: crate::setup::parse_address(addr)?,
            db: db
                .parse()
                .map_err(|_| Error::failed(format!("bad database {db:?}")))?,
            separator: sep.bytes().next().unwrap_or(b'|'),
            shared: SharedMap::open(shm)?,
        })
    }
}

fn floor_main(args: &[String]) -> Result<(), Error> {
    let FloorArgs {
        netns,
        addr,
        db,
        separator,
        shared,
    } = FloorArgs::parse(args)?;
    let netns = netns.as_str();
    let sock = in_netns(Some(netns), || {
        NetlinkSocket::events(RCVBUF)
            .map(|(s, _)| s)
            .map_err(|e| Error::failed(format!("netlink socket: {e}")))
    })?;
    let client = Client::connect_db(&addr, db, Duration::from_secs(10))
        .map_err(|e| Error::failed(format!("connecting to Redis at {addr}: {e}")))?;
    println!("ready");
    let prefix = [&b"PORT_TABLE"[..], &[separator]].concat();
    run(&sock, client, &prefix, shared.get())
}

fn run(sock: &NetlinkSocket, mut client: Client, prefix: &[u8], st: &Shared) -> Result<(), Error> {
    let mut buf = vec![0u8; 64 << 10];
    let mut out = Vec::with_capacity(512);
    let mut batch = PortBatch::default();
    let mut fds = [libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        wait_readable(&mut fds, st)?;
        if st.batching.load(Ordering::Acquire) == 1 {
            batch.turn(sock, &mut client, prefix, st, &mut buf)?;
            continue;
        }
        let mut any = false;
        while let Some(n) = recv_counting(sock, &mut buf, st)? {
            any = true;
            for link in port_links(&buf[..n]) {
                out.clear();
                match link.change {
                    LinkChange::New => encode::hset_port_status(
                        &mut out,
                        prefix,
                        link.name,
                        &LinkStatus::of(&link),
                    ),
                    LinkChange::Del => encode::del_key(&mut out, prefix, link.name),
                }
                send_and_await(&mut client, &out, 1)?;
            }
        }
        if any {
            st.idle_ns.store(monotonic_ns(), Ordering::Release);
        }
    }
}

/// Wait until the socket is readable: spinning on zero-timeout polls
/// while [`Shared::busy`] says so, else sleeping in `poll` (waking every
/// 10 ms to see whether flood asked for spinning).
pub fn wait_readable(fds: &mut [libc::pollfd; 1], st: &Shared) -> Result<(), Error> {
    let poll = |fds: &mut [libc::pollfd; 1], timeout| {
        fds[0].revents = 0;
        socket::poll(fds, Some(timeout)).map_err(|e| Error::failed(format!("poll: {e}")))?;
        Ok::<bool, Error>(fds[0].revents != 0)
    };
    loop {
        if st.busy.load(Ordering::Acquire) == 1 {
            if poll(fds, Duration::ZERO)? {
                return Ok(());
            }
            std::hint::spin_loop();
        } else if poll(fds, Duration::from_millis(10))? {
            return Ok(());
        }
    }
}

/// The link messages of a datagram that are about ports (by name).
fn port_links(datagram: &[u8]) -> impl Iterator<Item = LinkMessage<'_>> {
    parse::messages(datagram)
        .map_while(Result::ok)
        .filter_map(|(hdr, payload)| match parse::parse_event(&hdr, payload) {
            Ok(Event::Link(link)) if is_port_name(link.name) => Some(link),
            _ => None,
        })
}

/// One datagram into `buf`: its length, `None` once the socket is empty.
/// An overrun is counted in `st` and reading goes on.
pub fn recv_counting(
    sock: &NetlinkSocket,
    buf: &mut [u8],
    st: &Shared,
) -> Result<Option<usize>, Error> {
    loop {
        match sock.recv(buf) {
            Ok(Recv::Data(n)) => return Ok(Some(n.min(buf.len()))),
            Ok(Recv::WouldBlock) => return Ok(None),
            Ok(Recv::Overrun) => {
                st.overruns.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(Error::failed(format!("netlink recv: {e}"))),
        }
    }
}

/// Send `out` (`commands` commands) and wait for every reply; an error
/// reply ends the floor.
pub fn send_and_await(client: &mut Client, out: &[u8], commands: usize) -> Result<(), Error> {
    client
        .send_raw(out)
        .map_err(|e| Error::failed(format!("write to Redis: {e}")))?;
    for _ in 0..commands {
        let reply = client
            .read()
            .map_err(|e| Error::failed(format!("Redis reply: {e}")))?;
        if let Some(e) = reply.error() {
            return Err(Error::failed(format!("Redis refused a write: {e}")));
        }
    }
    Ok(())
}

/// The batching floor's state: every port seen (named once), each one's
/// latest change this wake-up (`None`: deleted), the ports changed in
/// first-seen order, and the write buffer.
#[derive(Default)]
struct PortBatch {
    index: std::collections::HashMap<Vec<u8>, usize>,
    names: Vec<Vec<u8>>,
    latest: Vec<Option<LinkStatus>>,
    changed: Vec<bool>,
    order: Vec<usize>,
    out: Vec<u8>,
}

impl PortBatch {
    /// One wake-up: read everything queued, then one pipelined write of
    /// each port's latest state, then its replies.
    fn turn(
        &mut self,
        sock: &NetlinkSocket,
        client: &mut Client,
        prefix: &[u8],
        st: &Shared,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        while let Some(n) = recv_counting(sock, buf, st)? {
            for link in port_links(&buf[..n]) {
                let i = match self.index.get(link.name) {
                    Some(&i) => i,
                    None => {
                        let i = self.names.len();
                        self.index.insert(link.name.to_vec(), i);
                        self.names.push(link.name.to_vec());
                        self.latest.push(None);
                        self.changed.push(false);
                        i
                    }
                };
                self.latest[i] = match link.change {
                    LinkChange::New => Some(LinkStatus::of(&link)),
                    LinkChange::Del => None,
                };
                if !self.changed[i] {
                    self.changed[i] = true;
                    self.order.push(i);
                }
            }
        }
        if self.order.is_empty() {
            return Ok(());
        }
        self.out.clear();
        for &i in &self.order {
            self.changed[i] = false;
            match &self.latest[i] {
                Some(status) => {
                    encode::hset_port_status(&mut self.out, prefix, &self.names[i], status)
                }
                None => encode::del_key(&mut self.out, prefix, &self.names[i]),
            }
        }
        let commands = self.order.len();
        self.order.clear();
        send_and_await(client, &self.out, commands)?;
        st.idle_ns.store(monotonic_ns(), Ordering::Release);
        Ok(())
    }
}
