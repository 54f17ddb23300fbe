//! SONiC's start-up contract, in SONiC's order (portsyncd.cpp / linksync.cpp):
//!
//! 1. CONFIG_DB `DEVICE_METADATA|localhost` `switch_type` (default `switch`);
//! 2. warm-start check, `WARM_RESTART_TABLE|portsyncd restore_count`;
//! 3. netlink subscription and `RTM_GETLINK` dump request;
//! 4. CONFIG_DB `PORT|*` → APPL_DB `PORT_TABLE` (ProducerStateTable,
//!    pipelined), skipped on warm start;
//! 5. `PortConfigDone` with `count`, skipped on warm start;
//! 6. cold start, not a DPU: every `Ethernet*` netdev that exists is an old
//!    interface, brought down by a netlink request and ignored for good;
//! 7. `PortInitDone` — sent by the loop once every configured port is seen.
//!
//! It blocks: there is nothing else to do until Redis answers. The netlink
//! socket is subscribed before the config push, so link changes that happen
//! meanwhile wait in its 16 MiB buffer and are applied right after. Redis
//! being absent is retried with capped backoff until it comes (or a stop
//! signal arrives); progress shows in the log and the `STATUS=` line.

use std::fmt;
use std::time::{Duration, Instant};

use crate::engine::netlink::drain::{drain, request_dump, Drained};
use crate::engine::netlink::reader::LinkReader;
use crate::engine::netlink::request;
use crate::engine::netlink::ring::RecvRing;
use crate::engine::netlink::socket::{NetlinkError, NetlinkSocket, RcvBufOutcome};
use crate::engine::redis::client::{Client, ClientError};
use crate::engine::runtime::config::Config;
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::signals::{Signal, Signals};
use crate::engine::sonic::dbconfig::{Database, Databases};
use crate::engine::sonic::pst::{ProducerTable, PstSet, SET_SCRIPT_SHA};
use crate::port::follow::LinkSync;
use crate::{log_info, log_notice, log_warn};

/// How long start-up waits for the initial dump to end before leaving the
/// rest of it to the loop.
const INITIAL_DUMP_WAIT: Duration = Duration::from_secs(10);

/// What start-up found out.
#[derive(Debug, Clone)]
pub struct StartInfo {
    pub switch_type: String,
    pub warm: bool,
    pub restore_count: u64,
    /// Ports listed in CONFIG_DB `PORT`.
    pub configured_ports: usize,
    pub old_interfaces: usize,
    pub rcvbuf: RcvBufOutcome,
    pub elapsed: Duration,
}

/// Start-up ended.
pub enum Started {
    /// Done: the loop takes over the event socket's reader; `dump_seq` is
    /// the last dump sequence used.
    Ready {
        info: Box<StartInfo>,
        reader: LinkReader,
        dump_seq: u32,
    },
    /// A stop signal arrived first.
    Stopped(i32),
}

/// A failure start-up cannot retry its way out of.
#[derive(Debug)]
pub enum StartError {
    Netlink(NetlinkError),
    Signals(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Netlink(e) => write!(f, "{e}"),
            StartError::Signals(e) => write!(f, "reading signals: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

enum Interrupt {
    Stop(i32),
    Fatal(StartError),
}

impl From<StartError> for Interrupt {
    fn from(e: StartError) -> Self {
        Interrupt::Fatal(e)
    }
}

/// How one pipelined ProducerStateTable push went.
enum Push {
    Done,
    /// `NOSCRIPT`: load the script and send again.
    NoScript,
}

/// The start-up sequence and what it needs.
pub struct Startup<'a> {
    pub cfg: &'a Config,
    pub dbs: &'a Databases,
    pub signals: &'a Signals,
    pub notifier: &'a Notifier,
    pub sync: &'a mut LinkSync,
}

impl Startup<'_> {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.redis.timeout_ms)
    }

    /// Sleep `d`, returning early on a stop signal. SIGHUP is noted and ignored
    /// (nothing to reload yet).
    fn pause(&self, d: Duration) -> Result<(), Interrupt> {
        use std::os::fd::AsRawFd;
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            let ready =
                crate::engine::redis::socket::wait_fd(self.signals.as_raw_fd(), libc::POLLIN, left)
                    .map_err(StartError::Signals)?;
            if ready {
                self.check_signals()?;
            }
        }
    }

    fn check_signals(&self) -> Result<(), Interrupt> {
        while let Some(sig) = self.signals.read().map_err(StartError::Signals)? {
            match sig {
                Signal::Stop(n) => return Err(Interrupt::Stop(n)),
                Signal::Reload => log_notice!("SIGHUP during start-up: nothing to reload yet"),
            }
        }
        Ok(())
    }

    /// Run `step` until it succeeds, backing off between attempts.
    fn retry<T>(
        &self,
        what: &str,
        db: &Database,
        mut step: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, Interrupt> {
        let mut backoff = self.cfg.redis.retry_min_ms;
        let mut attempts: u64 = 0;
        loop {
            self.check_signals()?;
            let addr = db.instance.address();
            let result =
                Client::connect_db(&addr, db.id, self.timeout()).and_then(|mut c| step(&mut c));
            match result {
                Ok(v) => {
                    if attempts > 0 {
                        log_notice!(
                            "{what}: Redis at {addr} answered after {attempts} failed attempts"
                        );
                    }
                    return Ok(v);
                }
                Err(e) => {
                    attempts += 1;
                    let msg =
                        format!("waiting for Redis at {addr} ({what}): {e}; retry in {backoff} ms");
                    // Say it loudly once, then once every 20 attempts.
                    if attempts == 1 || attempts % 20 == 0 {
                        log_warn!("{msg} (attempt {attempts})");
                    } else {
                        log_info!("{msg} (attempt {attempts})");
                    }
                    self.notifier
                        .status(&format!("waiting for Redis at {addr}: {e}"));
                    self.pause(Duration::from_millis(backoff))?;
                    backoff = (backoff * 2).min(self.cfg.redis.retry_max_ms);
                }
            }
        }
    }

    /// Run the whole sequence; `ring` becomes the event socket's.
    pub fn run(self, ring: RecvRing) -> Result<Started, StartError> {
        match self.run_inner(ring) {
            Ok(s) => Ok(s),
            Err(Interrupt::Stop(sig)) => Ok(Started::Stopped(sig)),
            Err(Interrupt::Fatal(e)) => Err(e),
        }
    }

    fn run_inner(self, ring: RecvRing) -> Result<Started, Interrupt> {
        let began = Instant::now();
        let dbs = self.dbs;
        let cfg_sep = dbs.config.separator as char;
        let state_sep = dbs.state.separator as char;
        self.notifier.status("starting: reading CONFIG_DB");

        // 1. The log level SONiC's way (CONFIG_DB LOGGER|portsyncd, created
        // with our level when absent), then switch_type.
        let logger_key = format!("LOGGER{cfg_sep}portsyncd");
        let metadata_key = format!("DEVICE_METADATA{cfg_sep}localhost");
        let switch_type = self.retry("switch_type", &dbs.config, |c| {
            let level = c.call_ok(&[b"HGET", logger_key.as_bytes(), b"LOGLEVEL"])?;
            match level.as_string() {
                Some(name) => match crate::engine::runtime::log::Level::parse(&name) {
                    Some(l) => crate::engine::runtime::log::change_level(
                        l,
                        &format!("CONFIG_DB {logger_key}"),
                    ),
                    None => log_warn!(
                        "CONFIG_DB {logger_key} LOGLEVEL {name:?} is not a level; ignored"
                    ),
                },
                None => {
                    let ours = crate::engine::runtime::log::level().name();
                    c.call_ok(&[
                        b"HSET",
                        logger_key.as_bytes(),
                        b"LOGLEVEL",
                        ours.as_bytes(),
                        b"LOGOUTPUT",
                        b"SYSLOG",
                    ])?;
                }
            }
            let v = c.call_ok(&[b"HGET", metadata_key.as_bytes(), b"switch_type"])?;
            Ok(v.as_string().unwrap_or_else(|| "switch".to_string()))
        })?;

        // 2. Warm start. The decision and the new count are made once, so a
        // retry after a lost connection never increments twice.
        let mut decided: Option<(bool, u64)> = None;
        let (warm, restore_count) = self.retry("warm-start check", &dbs.state, |c| {
            let (warm, count) = match decided {
                Some(d) => d,
                None => {
                    let system = c.call_ok(&[
                        b"HGET",
                        format!("WARM_RESTART_ENABLE_TABLE{state_sep}system").as_bytes(),
                        b"enable",
                    ])?;
                    let swss = c.call_ok(&[
                        b"HGET",
                        format!("WARM_RESTART_ENABLE_TABLE{state_sep}swss").as_bytes(),
                        b"enable",
                    ])?;
                    let enabled = system.as_bytes() == Some(b"true") || swss.as_bytes() == Some(b"true");
                    let d = if enabled {
                        let count = c.call_ok(&[
                            b"HGET",
                            format!("WARM_RESTART_TABLE{state_sep}portsyncd").as_bytes(),
                            b"restore_count",
                        ])?;
                        match count.as_string().and_then(|s| s.trim().parse::<u64>().ok()) {
                            Some(n) => (true, n + 1),
                            None => {
                                log_warn!(
                                    "warm start requested but WARM_RESTART_TABLE{state_sep}portsyncd has no restore_count: falling back to cold start"
                                );
                                (false, 0)
                            }
                        }
                    } else {
                        (false, 0)
                    };
                    decided = Some(d);
                    d
                }
            };
            c.call_ok(&[
                b"HSET",
                format!("WARM_RESTART_TABLE{state_sep}portsyncd").as_bytes(),
                b"restore_count",
                count.to_string().as_bytes(),
            ])?;
            Ok((warm, count))
        })?;
        log_notice!(
            "{} start (switch_type {switch_type}, restore_count {restore_count})",
            if warm { "warm" } else { "cold" }
        );

        // 3. Netlink: subscribe, then ask for a dump.
        let (netlink, rcvbuf) =
            NetlinkSocket::events(self.cfg.netlink.rcvbuf_bytes).map_err(StartError::Netlink)?;
        let mut reader = LinkReader::new(netlink, ring);
        if !rcvbuf.forced {
            log_warn!(
                "SO_RCVBUFFORCE refused (needs CAP_NET_ADMIN); SO_RCVBUF gave {} bytes for {} asked, capped by net.core.rmem_max (raise it, see sysctl/99-portsyncd.conf)",
                rcvbuf.effective,
                rcvbuf.requested
            );
        } else {
            log_info!("netlink receive buffer: {} bytes", rcvbuf.effective);
        }
        let mark_old = !warm && switch_type != "dpu";
        if mark_old {
            self.sync.mark_old_interfaces_until_first_dump_ends();
        }
        let mut dump_seq = 0;
        request_dump(&reader, self.sync, &mut dump_seq);

        // 4. CONFIG_DB PORT|* (KEYS order, as SONiC).
        self.notifier.status("starting: reading CONFIG_DB PORT");
        let pattern = format!("PORT{cfg_sep}*");
        let prefix_len = "PORT".len() + 1;
        let config_ports: Vec<(String, Vec<(String, String)>)> =
            self.retry("CONFIG_DB PORT", &dbs.config, |c| {
                let keys = c.call_ok(&[b"KEYS", pattern.as_bytes()])?;
                let names: Vec<String> = keys
                    .items()
                    .iter()
                    .filter_map(|k| k.as_string())
                    .filter(|k| k.len() > prefix_len)
                    .collect();
                let cmds: Vec<Vec<Vec<u8>>> = names
                    .iter()
                    .map(|k| vec![b"HGETALL".to_vec(), k.as_bytes().to_vec()])
                    .collect();
                let replies = c.pipeline_ok(&cmds)?;
                Ok(names
                    .into_iter()
                    .zip(replies)
                    .map(|(k, v)| (k[prefix_len..].to_string(), v.pairs()))
                    .collect())
            })?;
        let table = ProducerTable::new("PORT_TABLE", dbs.appl.id, dbs.appl.separator);
        if !warm {
            // 4+5. One pipeline: load the script, every port, PortConfigDone.
            let count = config_ports.len().to_string();
            let mut sets: Vec<PstSet> = config_ports
                .iter()
                .map(|(name, fields)| {
                    let f: Vec<(&str, &str)> = fields
                        .iter()
                        .map(|(a, b)| (a.as_str(), b.as_str()))
                        .collect();
                    PstSet::new(name, &f)
                })
                .collect();
            sets.push(PstSet::new("PortConfigDone", &[("count", &count)]));
            self.notifier.status("starting: writing APPL_DB PORT_TABLE");
            self.retry("APPL_DB PORT_TABLE push", &dbs.appl, |c| loop {
                let mut out = Vec::new();
                ProducerTable::encode_script_load(&mut out);
                for s in &sets {
                    s.encode(&table, &mut out);
                }
                c.send_raw(&out)?;
                let sha = c.read()?;
                if sha.as_bytes() != Some(SET_SCRIPT_SHA.as_bytes()) {
                    log_warn!("APPL_DB: SCRIPT LOAD answered {sha:?}, expected {SET_SCRIPT_SHA}");
                }
                // Read every reply before judging, so the connection stays in step.
                let mut push = Ok(Push::Done);
                for s in &sets {
                    let v = c.read()?;
                    match v.error() {
                        None => {}
                        Some(e) if e.starts_with("NOSCRIPT") && push.is_ok() => {
                            push = Ok(Push::NoScript);
                        }
                        Some(e) if e.starts_with("NOSCRIPT") => {}
                        Some(e) => {
                            push = Err(ClientError::Reply {
                                command: format!(
                                    "EVALSHA set PORT_TABLE {}",
                                    String::from_utf8_lossy(&s.key)
                                ),
                                error: e.to_string(),
                            })
                        }
                    }
                }
                match push? {
                    Push::Done => return Ok(()),
                    // A SCRIPT FLUSH raced us: the script is loaded first in
                    // the next pipeline again.
                    Push::NoScript => {
                        log_warn!("APPL_DB: NOSCRIPT during the port push; sending it again")
                    }
                }
            })?;
            log_notice!(
                "PortConfigDone: {} ports pushed to APPL_DB PORT_TABLE",
                config_ports.len()
            );
        }

        // Which configured ports APPL_DB PORT_TABLE already has (membership),
        // and which already have admin_status (no need to wait for them).
        let appl_sep = dbs.appl.separator as char;
        let presence: Vec<(bool, bool)> =
            self.retry("APPL_DB PORT_TABLE read", &dbs.appl, |c| {
                let cmds: Vec<Vec<Vec<u8>>> = config_ports
                    .iter()
                    .map(|(name, _)| {
                        vec![
                            b"HGETALL".to_vec(),
                            format!("PORT_TABLE{appl_sep}{name}").into_bytes(),
                        ]
                    })
                    .collect();
                let replies = c.pipeline_ok(&cmds)?;
                Ok(replies
                    .iter()
                    .map(|v| {
                        let pairs = v.pairs();
                        (
                            !pairs.is_empty(),
                            pairs.iter().any(|(f, _)| f == "admin_status"),
                        )
                    })
                    .collect())
            })?;
        for ((name, _), (present, has_admin)) in config_ports.iter().zip(presence) {
            if !self
                .sync
                .ports
                .add_configured(name.as_bytes(), present, has_admin)
            {
                log_warn!("CONFIG_DB PORT{cfg_sep}{name}: not a usable interface name, ignored");
            }
        }

        // The initial dump (and whatever else arrived meanwhile).
        self.notifier.status("starting: reading the kernel's links");
        let counters = self.sync.counters();
        let deadline = Instant::now() + INITIAL_DUMP_WAIT;
        while (self.sync.dump_running() || self.sync.dump_wanted()) && Instant::now() < deadline {
            let drained = drain(&mut reader, self.sync, &counters, &mut dump_seq, usize::MAX)
                .map_err(|source| {
                    StartError::Netlink(NetlinkError::Sys {
                        call: "recv",
                        source,
                    })
                })?;
            if drained == Drained::Empty && self.sync.dump_running() {
                use std::os::fd::AsRawFd;
                let fd = reader.socket().as_raw_fd();
                let _ = crate::engine::redis::socket::wait_fd(
                    fd,
                    libc::POLLIN,
                    Duration::from_millis(100),
                );
                self.check_signals()?;
            }
        }
        if self.sync.dump_running() {
            log_warn!("the initial link dump did not end within {INITIAL_DUMP_WAIT:?}; continuing");
        }

        // 6. Old interfaces: bring them down, by netlink request.
        let old: Vec<_> = std::mem::take(&mut self.sync.old_found);
        if !old.is_empty() {
            let requests = NetlinkSocket::requests(self.timeout()).map_err(StartError::Netlink)?;
            for (i, (ifindex, name)) in old.iter().enumerate() {
                let seq = i as u32 + 1;
                let what = format!("admin down of old interface {name} (ifindex {ifindex})");
                match requests.request_acked(&request::set_admin(seq, *ifindex, false), seq, &what)
                {
                    Ok(()) => log_info!("brought down old interface {name} (ifindex {ifindex})"),
                    Err(e) => log_warn!("{e}"),
                }
            }
            log_notice!("{} old interfaces brought down and ignored", old.len());
        }

        let info = StartInfo {
            switch_type,
            warm,
            restore_count,
            configured_ports: config_ports.len(),
            old_interfaces: old.len(),
            rcvbuf,
            elapsed: began.elapsed(),
        };
        Ok(Started::Ready {
            info: Box::new(info),
            reader,
            dump_seq,
        })
    }
}
