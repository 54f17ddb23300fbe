//! The metrics thread: turns the loop's samples into histograms, serves
//! them with every counter as Prometheus text, and logs a summary line.
//! It runs for one [`Daemon`]: the families that daemon exports, named
//! with its prefix.
//!
//! It shares nothing with the loop but the counters (atomics the loop
//! writes and this thread only reads) and the sample channel, which it only
//! ever *polls* (`try_recv`): a receiver never parks on it, so the loop's
//! `try_send` never has a sleeper to wake — no lock, no syscall on the loop
//! side. The thread wakes at least every [`DRAIN_IDLE`] to empty the
//! channel, more often while samples flow, and always just before a scrape
//! so a scrape shows every sample sent before it.
//!
//! The HTTP side is one mio poll over the listener and at most
//! [`MAX_CONNECTIONS`] connections, each with a fixed request buffer and a
//! deadline ([`CONNECTION_DEADLINE`]) from accept to close. A connection
//! over the cap gets `503` and is closed; one past its deadline gets `408`
//! (best effort) and is closed. One request per connection.
//!
//! Out of file descriptors, `accept` fails and the client would wait in
//! vain: the thread keeps one spare fd (`/dev/null`), gives it up to
//! accept the connection, answers `503` naming the shortage, and takes it
//! back. `/healthz` also answers `503` while any connection the daemon
//! needs cannot be opened for lack of fds ([`super::fds`]).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::changes::{ChangeLines, PortChange};
use super::flaps::PORT_FLAPS;
use super::http::{self, Parsed, Route, Status, MAX_REQUEST_BYTES};
use super::process::ProcessStats;
use super::render::{self, HttpStats, Snapshot};
use super::series::Series;
use super::{fds, Counters, Daemon, Sample, SampleKind};
use crate::engine::runtime::config::MetricsConfig;
use crate::engine::runtime::placement::{self, Refused};
use crate::engine::runtime::syslog;
use crate::{log_debug, log_error, log_info, log_notice};

/// Connections served at once; more are answered `503` and closed.
pub const MAX_CONNECTIONS: usize = 16;
/// From accept to close, whatever the client does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Longest sleep while no samples arrive. At the kernel's peak (~56k link
/// messages/s, DESIGN §6; at most two samples per port written plus one
/// per batch) a burst starting during this sleep queues under ~12k samples,
/// a fifth of `SAMPLE_CHANNEL_CAPACITY`.
pub const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// Sleep while samples flow.
const DRAIN_BUSY: Duration = Duration::from_millis(10);
/// Bytes read and thrown away after a response before closing anyway.
const DRAIN_AFTER_RESPONSE: usize = 64 << 10;

/// `/healthz` answers 503 once the loop's turn counter has not moved this
/// long (the loop turns at least once a second).
pub const LOOP_STALL: Duration = Duration::from_secs(5);
const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// The metrics endpoint, as it names itself in the fd shortage.
const ENDPOINT: &str = "metrics endpoint";

/// A cheap handle to change the metrics thread's settings at run time.
#[derive(Debug, Clone)]
pub struct MetricsControl {
    log_interval_s: Arc<AtomicU64>,
}

impl MetricsControl {
    fn new(secs: u64) -> MetricsControl {
        MetricsControl {
            log_interval_s: Arc::new(AtomicU64::new(secs)),
        }
    }

    /// Seconds between summary lines; 0 stops them. One relaxed store: safe
    /// on the loop thread. The metrics thread sees it within [`DRAIN_IDLE`]
    /// and starts a new interval from then.
    pub fn set_log_interval(&self, secs: u64) {
        self.log_interval_s.store(secs, Ordering::Relaxed);
    }

    /// The interval in force.
    pub fn log_interval(&self) -> u64 {
        self.log_interval_s.load(Ordering::Relaxed)
    }
}

/// The running metrics thread. Stopped and joined on drop.
pub struct MetricsThread {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    handle: Option<JoinHandle<()>>,
    control: MetricsControl,
    refused: Vec<Refused>,
    local_addr: Option<SocketAddr>,
}

impl MetricsThread {
    /// Bind the endpoint (unless `cfg.listen` is empty) and start the
    /// thread for `daemon`, pinned to `cfg.cpu` when set. A bind or pin the
    /// system refuses does not fail the spawn: the thread runs without it
    /// and the refusal waits in [`MetricsThread::take_refused`] for the
    /// caller to judge (warning, or exit under `runtime.strict`).
    pub fn spawn(
        cfg: &MetricsConfig,
        daemon: Daemon,
        counters: Arc<Counters>,
        rx: Receiver<Sample>,
    ) -> io::Result<MetricsThread> {
        MetricsThread::spawn_with_stall(cfg, daemon, counters, rx, LOOP_STALL)
    }

    /// [`spawn`](Self::spawn) with another loop-stall threshold for
    /// `/healthz` (the tests use a short one).
    /// (Longer than a screenful: most of it is the worker's fields, set
    /// once here.)
    pub fn spawn_with_stall(
        cfg: &MetricsConfig,
        daemon: Daemon,
        counters: Arc<Counters>,
        rx: Receiver<Sample>,
        stall: Duration,
    ) -> io::Result<MetricsThread> {
        let hist_err = |e| io::Error::other(format!("creating a histogram: {e:?}"));
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut refused = Vec::new();
        let (listener, local_addr) = match cfg.listen.0.map(|addr| (addr, bind(&poll, addr))) {
            None => (None, None),
            Some((_, Ok((l, a)))) => (Some(l), Some(a)),
            Some((addr, Err(source))) => {
                refused.push(Refused {
                    key: "metrics.listen",
                    asked: addr.to_string(),
                    needs: "an address free to bind (another process listens there?)",
                    source,
                });
                (None, None)
            }
        };
        let control = MetricsControl::new(cfg.log_interval_s);
        let stop = Arc::new(AtomicBool::new(false));
        let now = Instant::now();
        let mut worker = Worker {
            poll,
            listener,
            conns: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            accept_pending: false,
            spare: spare_fd(),
            daemon,
            counters,
            rx,
            recv_to_write: Series::latency(false).map_err(hist_err)?,
            recv_to_reply: Series::latency(true).map_err(hist_err)?,
            batch_size: Series::batch_size().map_err(hist_err)?,
            changes: ChangeLines::default(),
            http: HttpStats::default(),
            stop: stop.clone(),
            control: control.clone(),
            log: LogClock::new(now),
            text: String::new(),
            drained_last: 0,
            turns_seen: 0,
            turns_moved_at: now,
            stall,
        };
        let cpu = cfg.cpu;
        let (placed_tx, placed_rx) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(format!("{}-metrics", daemon.name()))
            .spawn(move || {
                let placed = cpu.map(|cpu| placement::pin_current_thread("metrics.cpu", cpu));
                let _ = placed_tx.send(placed);
                worker.run();
            })?;
        match placed_rx.recv() {
            Ok(Some(Err(e))) => refused.push(e),
            Ok(Some(Ok(()))) => log_info!("metrics thread pinned to CPU {}", cpu.unwrap_or(0)),
            Ok(None) | Err(_) => {}
        }
        match local_addr {
            Some(a) => log_notice!("metrics: Prometheus text on http://{a}/metrics"),
            None if cfg.listen.0.is_none() => {
                log_info!("metrics: export disabled (metrics.listen is empty)")
            }
            None => {}
        }
        Ok(MetricsThread {
            stop,
            waker,
            handle: Some(handle),
            control,
            refused,
            local_addr,
        })
    }

    /// Requests the system refused (`metrics.listen`, `metrics.cpu`), once.
    pub fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.refused)
    }

    /// A handle to change settings at run time (`log_interval_s`).
    pub fn control(&self) -> MetricsControl {
        self.control.clone()
    }

    /// The bound endpoint address, if serving.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stop and join it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.waker.wake() {
            log_error!("waking the metrics thread to stop: {e}");
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for MetricsThread {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The fd kept in reserve for answering when fds run out.
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

fn bind(poll: &Poll, addr: SocketAddr) -> io::Result<(TcpListener, SocketAddr)> {
    // std sets SO_REUSEADDR, so a restart does not wait out TIME_WAIT.
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    let local = l.local_addr()?;
    poll.registry()
        .register(&mut SourceFd(&l.as_raw_fd()), LISTENER, Interest::READABLE)?;
    Ok((l, local))
}

/// Where one connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head.
    Reading,
    /// Sending the response.
    Writing,
    /// Response sent and write side shut: reading what the client still
    /// sends until it closes, so closing does not reset the connection
    /// under the response.
    Draining,
}

struct Conn {
    stream: TcpStream,
    buf: Box<[u8; MAX_REQUEST_BYTES]>,
    len: usize,
    out: Vec<u8>,
    sent: usize,
    drained: usize,
    phase: Phase,
    deadline: Instant,
}

/// What a step on a connection leads to.
enum Step {
    /// Wait for the next readiness edge.
    Wait,
    /// Done, or the peer went away: close.
    Close,
    /// Answer this.
    Answer(Answer),
}

enum Answer {
    /// Where the request goes, and whether it was `HEAD` (no body).
    Route(Route, bool),
    Error(Status),
}

impl Conn {
    fn read_request(&mut self) -> Step {
        loop {
            let room = &mut self.buf[self.len..];
            match self.stream.read(room) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    self.len += n;
                    match http::parse_request(&self.buf[..self.len]) {
                        Parsed::Incomplete => {}
                        Parsed::Request(r) => {
                            return Step::Answer(Answer::Route(http::route(&r), r.is_head()))
                        }
                        Parsed::Malformed(why) => {
                            log_debug!("metrics: bad request: {why}");
                            return Step::Answer(Answer::Error(Status::BadRequest));
                        }
                        Parsed::TooLarge => {
                            return Step::Answer(Answer::Error(Status::HeaderTooLarge))
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    fn write_response(&mut self) -> Step {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Step::Close,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        self.out = Vec::new();
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Step::Close;
        }
        self.phase = Phase::Draining;
        self.drain()
    }

    fn drain(&mut self) -> Step {
        let mut scratch = [0u8; 1024];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Step::Close,
                Ok(n) => {
                    self.drained += n;
                    if self.drained > DRAIN_AFTER_RESPONSE {
                        return Step::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }
}

/// When the next summary line is due, and the counts at the last one.
struct LogClock {
    interval_s: u64,
    next: Option<Instant>,
    since: Instant,
    events: u64,
    writes: u64,
    dropped: u64,
}

impl LogClock {
    fn new(now: Instant) -> LogClock {
        LogClock {
            interval_s: 0,
            next: None,
            since: now,
            events: 0,
            writes: 0,
            dropped: 0,
        }
    }

    /// Follow a changed interval: a new interval starts now.
    fn set_interval(&mut self, secs: u64, now: Instant) {
        self.interval_s = secs;
        self.since = now;
        self.next = (secs > 0).then(|| now + Duration::from_secs(secs));
    }
}

struct Worker {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    /// Accepting stopped on a transient error (`EMFILE`, …): retry.
    accept_pending: bool,
    /// Given up to accept one more connection when fds run out.
    spare: Option<std::fs::File>,
    /// Whose metrics these are.
    daemon: Daemon,
    counters: Arc<Counters>,
    rx: Receiver<Sample>,
    recv_to_write: Series,
    recv_to_reply: Series,
    batch_size: Series,
    /// Per-port change lines, rate-limited.
    changes: ChangeLines,
    http: HttpStats,
    stop: Arc<AtomicBool>,
    control: MetricsControl,
    log: LogClock,
    /// Scratch for rendering.
    text: String,
    drained_last: usize,
    /// The loop's turn counter as last seen, and when it last moved.
    turns_seen: u64,
    turns_moved_at: Instant,
    /// How long the counter may stand still before `/healthz` says 503.
    stall: Duration,
}

impl Worker {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            self.follow_control(now);
            let timeout = self.timeout(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log_error!("metrics: poll: {e}; no more metrics");
                    return;
                }
            }
            self.drained_last = self.drain_samples();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(t) => self.on_conn(t - FIRST_CONN),
                }
            }
            if self.accept_pending {
                self.accept();
            }
            let now = Instant::now();
            self.expire(now);
            self.maybe_log(now);
        }
    }

    fn timeout(&self, now: Instant) -> Duration {
        let mut t = if self.drained_last > 0 {
            DRAIN_BUSY
        } else {
            DRAIN_IDLE
        };
        for c in self.conns.iter().flatten() {
            t = t.min(c.deadline.saturating_duration_since(now));
        }
        if let Some(next) = self.log.next {
            t = t.min(next.saturating_duration_since(now));
        }
        t
    }

    /// Record what is in the channel now (not what keeps arriving: the
    /// loop can outpace one pass).
    fn drain_samples(&mut self) -> usize {
        let n = self.rx.len();
        for _ in 0..n {
            let Ok(s) = self.rx.try_recv() else { break };
            match s.kind {
                SampleKind::RecvToWrite => self.recv_to_write.record(s.value),
                SampleKind::RecvToReply => self.recv_to_reply.record(s.value),
                SampleKind::BatchSize => self.batch_size.record(s.value),
                SampleKind::PortChange => self.change_line(s.value),
            }
        }
        n
    }

    /// A port's change as a NOTICE line, at most one a second per port.
    fn change_line(&mut self, packed: u64) {
        let change = PortChange::unpack(packed);
        let now = crate::engine::sys::monotonic_ns();
        if let Some(left_out) = self.changes.admit(change.port, now) {
            let name = PORT_FLAPS.name(change.port).unwrap_or(b"?");
            let name = String::from_utf8_lossy(name);
            let words = change.words();
            if left_out > 0 {
                log_notice!("{name}: {words} ({left_out} earlier changes not logged)");
            } else {
                log_notice!("{name}: {words}");
            }
        }
        self.counters
            .change_lines_suppressed
            .set(self.changes.suppressed);
    }

    /// Accept every waiting connection, each into a free slot with its
    /// deadline; over the cap, or out of fds, answer 503 and close. (One
    /// function: the spare fd given up and taken back around an accept
    /// that hit EMFILE must stay next to that accept.)
    fn accept(&mut self) {
        let now = Instant::now();
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            let (stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) if fds::is_exhaustion(&e) && self.spare.is_some() => {
                    fds::failed(ENDPOINT, &e);
                    self.answer_short_of_fds();
                    continue;
                }
                Err(e) => {
                    fds::failed(ENDPOINT, &e);
                    if !self.accept_pending {
                        log_error!("metrics: accept: {e}; retrying");
                    }
                    self.accept_pending = true;
                    return;
                }
            };
            fds::opened(ENDPOINT);
            let Some(slot) = self.conns.iter().position(Option::is_none) else {
                self.reject(stream);
                continue;
            };
            let token = Token(FIRST_CONN + slot);
            let registered = stream.set_nonblocking(true).and_then(|()| {
                self.poll.registry().register(
                    &mut SourceFd(&stream.as_raw_fd()),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
            });
            if let Err(e) = registered {
                log_error!("metrics: setting up a connection: {e}");
                continue;
            }
            self.conns[slot] = Some(Conn {
                stream,
                buf: Box::new([0; MAX_REQUEST_BYTES]),
                len: 0,
                out: Vec::new(),
                sent: 0,
                drained: 0,
                phase: Phase::Reading,
                deadline: now + CONNECTION_DEADLINE,
            });
            // A request already queued would not raise a new edge.
            self.on_conn(slot);
        }
    }

    /// `accept` failed for lack of fds: give up the spare fd, accept one
    /// connection, tell it why (503) and close it, take the spare back.
    /// Without a spare (it could not be taken back) accepting waits.
    fn answer_short_of_fds(&mut self) {
        self.spare = None;
        let accepted = self.listener.as_ref().map(|l| l.accept());
        if let Some(Ok((stream, _))) = accepted {
            let why = fds::shortage().unwrap_or_default();
            self.reject_with(stream, why.as_bytes());
        }
        self.spare = spare_fd();
        if self.spare.is_none() {
            self.accept_pending = true;
        }
    }

    /// Over the connection cap: a best-effort 503 on a fresh socket (its
    /// send buffer is empty, one write fits) and close.
    fn reject(&mut self, stream: TcpStream) {
        self.reject_with(stream, b"");
    }

    /// A best-effort 503 with `why` as its body (a generic one when empty).
    fn reject_with(&mut self, mut stream: TcpStream, why: &[u8]) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let mut scratch = [0u8; 1024];
        // Read what already came, so the close is a FIN rather than a reset.
        let _ = stream.read(&mut scratch);
        let mut out = Vec::with_capacity(160 + why.len());
        if why.is_empty() {
            http::write_error(&mut out, Status::Unavailable);
        } else {
            http::write_response(&mut out, Status::Unavailable, http::PLAIN_TEXT, why);
        }
        let _ = stream.write(&out);
        let _ = stream.shutdown(Shutdown::Write);
        self.http.responses[Status::Unavailable.index()] += 1;
    }

    fn on_conn(&mut self, slot: usize) {
        let Some(mut conn) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let keep = loop {
            let step = match conn.phase {
                Phase::Reading => conn.read_request(),
                Phase::Writing => conn.write_response(),
                Phase::Draining => conn.drain(),
            };
            match step {
                Step::Wait => break true,
                Step::Close => break false,
                Step::Answer(a) => {
                    let head = matches!(a, Answer::Route(_, true));
                    self.answer(a, &mut conn.out);
                    if head {
                        http::strip_body(&mut conn.out);
                    }
                    conn.sent = 0;
                    conn.phase = Phase::Writing;
                }
            }
        };
        if keep {
            self.conns[slot] = Some(conn);
        } else {
            self.close(conn);
        }
    }

    fn answer(&mut self, a: Answer, out: &mut Vec<u8>) {
        let status = match a {
            Answer::Route(Route::Metrics, _) => {
                // Everything sent before the scrape is in it.
                self.drain_samples();
                self.counters.fd_exhausted.set(fds::exhausted_total());
                self.copy_log_counters();
                let process = ProcessStats::read()
                    .inspect_err(|e| log_debug!("metrics: process_* left out: {e}"))
                    .ok();
                let snap = Snapshot {
                    daemon: self.daemon,
                    counters: &self.counters,
                    recv_to_write: &self.recv_to_write,
                    recv_to_reply: &self.recv_to_reply,
                    batch_size: &self.batch_size,
                    http: &self.http,
                    flaps: &PORT_FLAPS,
                    process: process.as_ref(),
                };
                render::render(&mut self.text, &snap);
                http::write_response(out, Status::Ok, http::PROMETHEUS_TEXT, self.text.as_bytes());
                Status::Ok
            }
            Answer::Route(Route::Healthz, _) => {
                // The loop turns at least once a second; a counter that has
                // not moved for LOOP_STALL means it is stuck.
                self.watch_loop(Instant::now());
                if let Some(why) = fds::shortage() {
                    http::write_response(
                        out,
                        Status::Unavailable,
                        http::PLAIN_TEXT,
                        why.as_bytes(),
                    );
                    self.http.responses[Status::Unavailable.index()] += 1;
                    return;
                }
                if self.turns_moved_at.elapsed() < self.stall {
                    http::write_response(out, Status::Ok, http::PLAIN_TEXT, b"ok\n");
                    Status::Ok
                } else {
                    Status::Unavailable
                }
            }
            Answer::Route(Route::NotFound, _) => Status::NotFound,
            Answer::Route(Route::MethodNotAllowed, _) => Status::MethodNotAllowed,
            Answer::Error(s) => s,
        };
        if status != Status::Ok {
            http::write_error(out, status);
        }
        self.http.responses[status.index()] += 1;
    }

    fn close(&mut self, conn: Conn) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
        // Dropping the stream closes it.
    }

    /// Close every connection past its deadline; one still waiting for its
    /// request gets a best-effort 408 first.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let expired = matches!(&self.conns[slot], Some(c) if c.deadline <= now);
            if !expired {
                continue;
            }
            let Some(mut conn) = self.conns[slot].take() else {
                continue;
            };
            match conn.phase {
                Phase::Reading => {
                    let mut out = Vec::with_capacity(160);
                    http::write_error(&mut out, Status::RequestTimeout);
                    let _ = conn.stream.write(&out);
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    self.http.responses[Status::RequestTimeout.index()] += 1;
                    self.http.timeouts += 1;
                }
                Phase::Writing => self.http.timeouts += 1,
                Phase::Draining => {}
            }
            self.close(conn);
        }
    }

    /// Note whether the loop's turn counter moved (called at least every
    /// `DRAIN_IDLE`).
    fn watch_loop(&mut self, now: Instant) {
        let turns = self.counters.loop_turns.get();
        if turns != self.turns_seen {
            self.turns_seen = turns;
            self.turns_moved_at = now;
        }
    }

    /// The log's process-wide syslog counts, into the table.
    fn copy_log_counters(&self) {
        let c = &self.counters;
        c.log_lines_dropped.set(syslog::lines_dropped());
        c.log_lines_to_stderr.set(syslog::lines_to_stderr());
        c.log_syslog_reconnects.set(syslog::reconnects());
    }

    fn follow_control(&mut self, now: Instant) {
        self.watch_loop(now);
        self.counters.fd_exhausted.set(fds::exhausted_total());
        self.copy_log_counters();
        let want = self.control.log_interval();
        if want != self.log.interval_s {
            self.log.set_interval(want, now);
            self.log.events = self.events();
            self.log.writes = self.writes();
            self.log.dropped = self.counters.samples_dropped.get();
            self.recv_to_reply.take_interval();
        }
    }

    /// The daemon's events for the summary line: the messages it syncs.
    fn events(&self) -> u64 {
        let c = &self.counters;
        match self.daemon {
            Daemon::Portsyncd => c.msgs_newlink.get() + c.msgs_dellink.get(),
            Daemon::Neighsyncd => c.msgs_newneigh.get() + c.msgs_delneigh.get(),
        }
    }

    /// The daemon's writes for the summary line: its entries set and
    /// deleted.
    fn writes(&self) -> u64 {
        let c = &self.counters;
        match self.daemon {
            Daemon::Portsyncd => c.ports_written.get() + c.ports_deleted.get(),
            Daemon::Neighsyncd => c.neighbors_written.get() + c.neighbors_deleted.get(),
        }
    }

    fn maybe_log(&mut self, now: Instant) {
        let Some(next) = self.log.next else { return };
        if now < next {
            return;
        }
        let (events, writes) = (self.events(), self.writes());
        let dropped = self.counters.samples_dropped.get();
        let q = self.recv_to_reply.take_interval();
        let secs = now.duration_since(self.log.since).as_secs_f64();
        log_notice!(
            "{}",
            render::summary_line(
                secs,
                events.wrapping_sub(self.log.events),
                writes.wrapping_sub(self.log.writes),
                dropped.wrapping_sub(self.log.dropped),
                &q
            )
        );
        self.log.events = events;
        self.log.writes = writes;
        self.log.dropped = dropped;
        self.log.since = now;
        let step = Duration::from_secs(self.log.interval_s);
        // Keep the cadence; after a long stall, restart it from now.
        let mut n = next + step;
        if n <= now {
            n = now + step;
        }
        self.log.next = Some(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::metrics::Recorder;
    use crate::engine::runtime::config::Listen;

    fn get(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn value(text: &str, series: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_string()
    }

    #[test]
    fn samples_sent_before_a_scrape_are_in_it() {
        let (rec, rx) = Recorder::new();
        let cfg = MetricsConfig {
            listen: Listen(Some(SocketAddr::from(([127, 0, 0, 1], 0)))),
            cpu: None,
            log_interval_s: 0,
        };
        let mut t =
            MetricsThread::spawn(&cfg, Daemon::Portsyncd, rec.counters.clone(), rx).unwrap();
        assert!(t.take_refused().is_empty());
        let addr = t.local_addr().unwrap();
        for i in 1..=1000u64 {
            rec.record(SampleKind::RecvToReply, i * 1_000);
            rec.record(SampleKind::RecvToWrite, 500);
        }
        rec.record(SampleKind::BatchSize, 7);
        rec.counters.ports_written.add(3);
        let text = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert_eq!(
            value(&text, "portsyncd_recv_to_reply_seconds_count"),
            "1000"
        );
        assert_eq!(
            value(&text, "portsyncd_recv_to_reply_seconds_sum"),
            "0.5005"
        );
        assert_eq!(
            value(&text, "portsyncd_recv_to_write_seconds_count"),
            "1000"
        );
        assert_eq!(
            value(
                &text,
                "portsyncd_recv_to_write_seconds_bucket{le=\"0.000001\"}"
            ),
            "1000"
        );
        assert_eq!(value(&text, "portsyncd_batch_commands_sum"), "7");
        assert_eq!(value(&text, "portsyncd_ports_written_total"), "3");
        assert_eq!(value(&text, "portsyncd_samples_dropped_total"), "0");
        let body_len = text.split("\r\n\r\n").nth(1).unwrap().len();
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));
        t.stop();
    }

    #[test]
    fn healthz_says_503_once_the_loop_stops_turning() {
        let (rec, rx) = Recorder::new();
        let cfg = MetricsConfig {
            listen: Listen(Some(SocketAddr::from(([127, 0, 0, 1], 0)))),
            cpu: None,
            log_interval_s: 0,
        };
        let stall = Duration::from_millis(300);
        let t = MetricsThread::spawn_with_stall(
            &cfg,
            Daemon::Portsyncd,
            rec.counters.clone(),
            rx,
            stall,
        )
        .unwrap();
        let addr = t.local_addr().unwrap();
        // A loop that turns: healthy, however long it runs.
        let started = Instant::now();
        let mut last_turn = started;
        while started.elapsed() < stall * 3 {
            rec.counters.loop_turns.inc();
            last_turn = Instant::now();
            let text = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        }
        // A loop that stopped: 503 once the threshold has passed since its
        // last turn (the worker looks at the counter at least every
        // DRAIN_IDLE, and at every /healthz).
        let text = loop {
            let text = get(addr, b"GET /healthz HTTP/1.1\r\n\r\n");
            if !text.starts_with("HTTP/1.1 200 OK\r\n") || last_turn.elapsed() > stall * 10 {
                break text;
            }
        };
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(last_turn.elapsed() >= stall, "503 before the threshold");
        t.stop();
    }

    #[test]
    fn the_log_interval_can_change_at_run_time() {
        let (rec, rx) = Recorder::new();
        let cfg = MetricsConfig {
            listen: Listen(None),
            cpu: None,
            log_interval_s: 60,
        };
        let t = MetricsThread::spawn(&cfg, Daemon::Portsyncd, rec.counters.clone(), rx).unwrap();
        assert!(t.local_addr().is_none());
        let c = t.control();
        assert_eq!(c.log_interval(), 60);
        c.set_log_interval(0);
        assert_eq!(t.control().log_interval(), 0, "clones share the setting");
        t.stop();
    }

    #[test]
    fn a_taken_address_is_refused_not_fatal() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let (rec, rx) = Recorder::new();
        let cfg = MetricsConfig {
            listen: Listen(Some(held.local_addr().unwrap())),
            cpu: None,
            log_interval_s: 0,
        };
        let mut t =
            MetricsThread::spawn(&cfg, Daemon::Portsyncd, rec.counters.clone(), rx).unwrap();
        let refused = t.take_refused();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].key, "metrics.listen");
        assert_eq!(refused[0].source.kind(), io::ErrorKind::AddrInUse);
        assert!(t.local_addr().is_none());
        assert!(t.take_refused().is_empty(), "reported once");
        // It still drains samples.
        rec.record(SampleKind::BatchSize, 1);
        drop(t);
    }
}
