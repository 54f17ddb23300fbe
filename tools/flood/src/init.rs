//! `flood init`: how soon after the last port's netdev appears the daemon
//! announces `PortInitDone` (issue 3).
//!
//! Each run is a fresh start-up: a private redis-server with CONFIG_DB
//! `PORT` for every port, the daemon (READY), orchagent's step, and then
//! flood creates the netdevs itself, one acked request per veth. A thread
//! with its own netlink socket in the namespace stamps each port's first
//! `RTM_NEWLINK` as it reads it, and the keyspace notification of APPL_DB
//! `_PORT_TABLE:PortInitDone` as it reads it. Both stamps are taken right
//! after the read that brought the news, on the same thread, so both are
//! late by that thread's wake-up time, never early.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, Sender};
use serde_json::{json, Value};
use syncd::engine::netlink::parse::{self, LinkChange, RTM_NEWLINK};
use syncd::engine::netlink::socket::{NetlinkSocket, Recv};
use syncd::engine::redis::client::Client;
use syncd::engine::redis::reply::Reply;
use syncd::engine::redis::socket::poll;
use syncd::engine::sonic::dbconfig::Address;
use syncd::engine::sys::monotonic_ns;
use testbed::Netns;

use crate::cli::Options;
use crate::kernel::{in_netns, Requests};
use crate::procfs;
use crate::progress::Progress;
use crate::report::median;
use crate::setup::Bench;
use crate::signal::Stop;
use crate::watch::{pollfd, redis_failed};
use crate::Error;

/// APPL_DB's number in the database_config.json `flood run` writes.
const APPL_DB: u32 = 0;
/// Receive buffer of the stamping socket: never the one that overruns.
const LISTENER_RCVBUF: usize = 16 << 20;
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// The subscriber's role, for messages.
const SUBSCRIBER: &str = "PortInitDone subscriber";

/// What the stamping thread saw.
#[derive(Debug, Default)]
struct Seen {
    /// Per port: when its first `RTM_NEWLINK` was read; 0 if never.
    first_seen: Vec<u64>,
    /// When the `PortInitDone` notification was read.
    init_done_ns: Option<u64>,
    /// Link messages read in the namespace.
    kernel_messages: u64,
    /// `ENOBUFS` on the stamping socket (stamps then are suspect).
    overruns: u64,
}

/// One start-up.
#[derive(Debug, Clone)]
pub struct InitRun {
    pub ports: usize,
    /// First creation acked → last creation acked.
    pub create_ns: u64,
    /// The last port's first `RTM_NEWLINK` read → `PortInitDone` read.
    pub last_seen_to_done_ns: i64,
    /// The request creating the last port sent → `PortInitDone` read: an
    /// upper bound (the port cannot have appeared before its request).
    pub last_sent_to_done_ns: i64,
    /// The last creation acked → `PortInitDone` read.
    pub last_ack_to_done_ns: i64,
    /// The first port's first `RTM_NEWLINK` read → `PortInitDone` read.
    pub first_seen_to_done_ns: i64,
    /// How long after its creation request was sent the last port's
    /// `RTM_NEWLINK` was read.
    pub last_port_read_lag_ns: i64,
    pub kernel_messages: u64,
    pub listener_overruns: u64,
    /// The daemon's CPU time from the first creation to `PortInitDone`.
    pub daemon_cpu_ns: Option<u64>,
}

/// The stamping thread's loop.
fn stamp(
    sock: NetlinkSocket,
    mut sub: Client,
    names: HashMap<Vec<u8>, usize>,
    stop: Stop,
    quit: Arc<AtomicBool>,
    done: Sender<()>,
) -> Result<Seen, Error> {
    let mut seen = Seen {
        first_seen: vec![0; names.len()],
        ..Seen::default()
    };
    let mut remaining = names.len();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = [
            pollfd(sock.as_raw_fd()),
            pollfd(sub.as_raw_fd()),
            pollfd(stop.fd()),
        ];
        poll(&mut fds, Some(Duration::from_millis(100)))
            .map_err(|e| Error::failed(format!("init: poll: {e}")))?;
        if fds[2].revents != 0 || quit.load(Ordering::Relaxed) {
            return Ok(seen);
        }
        if fds[0].revents != 0 {
            loop {
                let n = match sock.recv(&mut buf) {
                    Ok(Recv::Data(n)) => n.min(buf.len()),
                    Ok(Recv::WouldBlock) => break,
                    Ok(Recv::Overrun) => {
                        seen.overruns += 1;
                        continue;
                    }
                    Err(e) => return Err(Error::failed(format!("init: netlink recv: {e}"))),
                };
                let now = monotonic_ns();
                for msg in parse::messages(&buf[..n]) {
                    let Ok((hdr, payload)) = msg else { break };
                    if hdr.msg_type != RTM_NEWLINK {
                        continue;
                    }
                    seen.kernel_messages += 1;
                    let Ok(link) = parse::parse_link(LinkChange::New, payload) else {
                        continue;
                    };
                    if let Some(&i) = names.get(link.name) {
                        if seen.first_seen[i] == 0 {
                            seen.first_seen[i] = now;
                            remaining -= 1;
                        }
                    }
                }
            }
        }
        if fds[1].revents != 0 {
            sub.fill().map_err(redis_failed(SUBSCRIBER))?;
            let now = monotonic_ns();
            while let Some(r) = sub.next_reply().map_err(redis_failed(SUBSCRIBER))? {
                if let Reply::Array(items) = r {
                    let kind = items.first().and_then(|i| i.as_bytes());
                    let event = items.last().and_then(|i| i.as_bytes());
                    if kind == Some(b"message") && event == Some(b"hset") {
                        seen.init_done_ns.get_or_insert(now);
                    }
                }
            }
        }
        if remaining == 0 && seen.init_done_ns.is_some() {
            let _ = done.send(());
            return Ok(seen);
        }
    }
}

/// Start the stamping thread; its sockets are open when this returns.
fn start_stamping(
    bench: &Bench,
    stop: &Stop,
    quit: &Arc<AtomicBool>,
    done: Sender<()>,
) -> Result<std::thread::JoinHandle<Result<Seen, Error>>, Error> {
    let sock = in_netns(bench.dut_netns.as_deref(), || {
        NetlinkSocket::events(LISTENER_RCVBUF)
            .map(|(s, _)| s)
            .map_err(|e| Error::failed(format!("netlink event socket: {e}")))
    })?;
    let addr: &Address = &bench.address;
    let mut sub = Client::connect(addr, SETUP_TIMEOUT)
        .map_err(|e| Error::failed(format!("{SUBSCRIBER}: connecting to Redis at {addr}: {e}")))?;
    let channel = format!("__keyspace@{APPL_DB}__:_PORT_TABLE:PortInitDone");
    sub.subscribe(b"SUBSCRIBE", &[channel.as_bytes()])
        .map_err(redis_failed(SUBSCRIBER))?;
    let names = bench
        .ports
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_bytes().to_vec(), i))
        .collect();
    let (stop, quit) = (stop.clone(), quit.clone());
    std::thread::Builder::new()
        .name("flood-init".into())
        .spawn(move || stamp(sock, sub, names, stop, quit, done))
        .map_err(|e| Error::failed(format!("starting the stamping thread: {e}")))
}

/// One fresh start-up, measured.
fn one_run(o: &Options, stop: &Stop) -> Result<InitRun, Error> {
    let mut bench = Bench::run(o, stop)?;
    let quit = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let thread = start_stamping(&bench, stop, &quit, done_tx)?;
    // Whatever happens below, the thread ends before the bench goes.
    struct Quit(Arc<AtomicBool>);
    impl Drop for Quit {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let quit_guard = Quit(quit);
    let mut req = Requests::open(bench.dut_netns.as_deref())?;
    let cpu0 = bench.daemon_pid.and_then(procfs::process_cpu);
    let mut sent = Vec::with_capacity(bench.ports.len());
    let mut acks = Vec::with_capacity(bench.ports.len());
    for name in &bench.ports {
        if stop.requested() {
            return Err(Error::Interrupted);
        }
        let (s, a) = req.create_veth(name, &Netns::peer(name))?;
        sent.push(s);
        acks.push(a);
        if !o.create_gap.is_zero() && !stop.sleep(o.create_gap) {
            return Err(Error::Interrupted);
        }
    }
    let finished = select! {
        recv(done_rx) -> _ => true,
        recv(stop.channel()) -> _ => return Err(Error::Interrupted),
        default(o.settle_timeout) => false,
    };
    let cpu1 = bench.daemon_pid.and_then(procfs::process_cpu);
    drop(quit_guard);
    let seen = thread
        .join()
        .map_err(|_| Error::failed("the stamping thread panicked"))??;
    bench.check_daemon()?;
    let seen_count = seen.first_seen.iter().filter(|&&t| t != 0).count();
    let Some(done) = seen.init_done_ns.filter(|_| finished) else {
        return Err(Error::failed(format!(
            "no PortInitDone within {:?} of creating the ports ({seen_count} of {} ports seen \
             by flood); daemon log:\n{}",
            o.settle_timeout,
            bench.ports.len(),
            bench.daemon_log_tail()
        )));
    };
    let last_seen = seen.first_seen.iter().copied().max().unwrap_or(0);
    let first_seen = seen.first_seen.iter().copied().min().unwrap_or(0);
    let last_port = acks.len() - 1;
    let (first_sent, last_sent, last_ack) = (sent[0], sent[last_port], acks[last_port]);
    Ok(InitRun {
        ports: bench.ports.len(),
        create_ns: last_ack - first_sent,
        last_seen_to_done_ns: done as i64 - last_seen as i64,
        last_sent_to_done_ns: done as i64 - last_sent as i64,
        last_ack_to_done_ns: done as i64 - last_ack as i64,
        first_seen_to_done_ns: done as i64 - first_seen as i64,
        last_port_read_lag_ns: seen.first_seen[last_port] as i64 - last_sent as i64,
        kernel_messages: seen.kernel_messages,
        listener_overruns: seen.overruns,
        daemon_cpu_ns: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.since(a).exact_ns()),
            _ => None,
        },
    })
}

fn ms(ns: i64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// `flood init`: every run, the summary, the JSON.
pub fn measure(o: &Options) -> Result<u64, Error> {
    crate::check_output("--json", o.json.as_deref())?;
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::failed(
            "flood needs root: it creates network namespaces and links",
        ));
    }
    let stop = crate::signal::install().map_err(|e| Error::failed(format!("signals: {e}")))?;
    let mut progress = Progress::new(o.progress);
    let mut runs = Vec::new();
    for i in 0..o.runs {
        progress.show(|| format!("init run {}/{}: setting up", i + 1, o.runs));
        let r = one_run(o, &stop)?;
        progress.note(&format!(
            "init run {}/{}: {} ports created in {:.1} ms; last seen → PortInitDone {:.2} ms",
            i + 1,
            o.runs,
            r.ports,
            ms(r.create_ns as i64),
            ms(r.last_seen_to_done_ns)
        ));
        runs.push(r);
    }
    print!("{}", summary(o, &runs));
    if let Some(path) = &o.json {
        let mut doc = json_document(o, &runs);
        crate::provenance::stamp(&mut doc);
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::failed(format!("encoding JSON: {e}")))?;
        crate::write_file("--json", path, &(text + "\n"))?;
    }
    Ok(0)
}

fn medians(runs: &[InitRun]) -> (Option<f64>, Option<f64>) {
    let mut seen: Vec<f64> = runs.iter().map(|r| ms(r.last_seen_to_done_ns)).collect();
    let mut ack: Vec<f64> = runs.iter().map(|r| ms(r.last_sent_to_done_ns)).collect();
    (median(&mut seen), median(&mut ack))
}

fn how_created(o: &Options) -> String {
    if o.create_gap.is_zero() {
        "created back to back".into()
    } else {
        format!("created {} µs apart", o.create_gap.as_micros())
    }
}

/// The human summary.
pub fn summary(o: &Options, runs: &[InitRun]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let ports = runs.first().map_or(0, |r| r.ports);
    let _ = writeln!(
        s,
        "\n== init: {ports} ports {}, {} fresh start-ups ==",
        how_created(o),
        runs.len()
    );
    let _ = writeln!(
        s,
        "{:<6}{:>11}{:>22}{:>22}{:>16}{:>14}",
        "run",
        "create ms",
        "last seen → Init ms",
        "last sent → Init ms",
        "read lag µs",
        "daemon CPU ms"
    );
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<6}{:>11.1}{:>22.2}{:>22.2}{:>16.1}{:>14}{}",
            i + 1,
            ms(r.create_ns as i64),
            ms(r.last_seen_to_done_ns),
            ms(r.last_sent_to_done_ns),
            r.last_port_read_lag_ns as f64 / 1e3,
            r.daemon_cpu_ns
                .map_or("-".into(), |ns| format!("{:.1}", ms(ns as i64))),
            if r.listener_overruns > 0 {
                "  (flood's socket overran: stamps suspect)"
            } else {
                ""
            }
        );
    }
    let (seen, ack) = medians(runs);
    if let (Some(seen), Some(ack)) = (seen, ack) {
        let _ = writeln!(s, "{:<6}{:>11}{:>22.2}{:>22.2}", "median", "", seen, ack);
        let _ = writeln!(
            s,
            "last seen: when flood's own netlink socket in the namespace read the last port's \
             first RTM_NEWLINK; last sent: when flood sent the request creating it (an upper \
             bound: it cannot have appeared earlier); read lag: the first minus the second. \
             SONiC's C++ daemon took 220–450 ms here."
        );
        let _ = writeln!(
            s,
            "  PortInitDone after the last netdev appeared (median): {seen:.2} ms"
        );
    }
    s
}

fn json_document(o: &Options, runs: &[InitRun]) -> Value {
    let (seen, ack) = medians(runs);
    json!({
        "tool": "flood",
        "version": env!("CARGO_PKG_VERSION"),
        "command": o.argv.join(" "),
        "mode": "init",
        "ports": runs.first().map_or(0, |r| r.ports),
        "create_gap_us": o.create_gap.as_micros() as u64,
        "median_ms": seen,
        "median_sent_ms": ack,
        "runs": runs.iter().map(|r| json!({
            "last_seen_to_init_done_ms": ms(r.last_seen_to_done_ns),
            "last_sent_to_init_done_ms": ms(r.last_sent_to_done_ns),
            "last_ack_to_init_done_ms": ms(r.last_ack_to_done_ns),
            "first_seen_to_init_done_ms": ms(r.first_seen_to_done_ns),
            "create_ms": ms(r.create_ns as i64),
            "last_port_read_lag_us": (r.last_port_read_lag_ns as f64 / 100.0).round() / 10.0,
            "kernel_messages": r.kernel_messages,
            "listener_overruns": r.listener_overruns,
            "daemon_cpu_ms": r.daemon_cpu_ns.map(|ns| ms(ns as i64)),
        })).collect::<Vec<_>>(),
    })
}
