//! SONiC's start-up contract, in SONiC's order (portsyncd.cpp / linksync.cpp):
//!
//! 1. CONFIG_DB `DEVICE_METADATA|localhost` `switch_type` (default `switch`);
//! 2. warm-start check, `WARM_RESTART_TABLE|portsyncd restore_count`;
//! 3. netlink subscription and `RTM_GETLINK` dump request;
//! 4. CONFIG_DB `PORT|*` → APPL_DB `PORT_TABLE` (ProducerStateTable,
//!    pipelined), skipped on warm start;
//! 5. `PortConfigDone` with `count`, skipped on warm start;
//! 6. cold start, not a DPU: every `Ethernet*` netdev that existed when the
//!    daemon started (a snapshot taken before anything else) is an old
//!    interface, brought down by a netlink request and ignored for good;
//! 7. `PortInitDone` — sent by the loop once every configured port is seen.
//!
//! It blocks: there is nothing else to do until Redis answers. The netlink
//! socket is subscribed before the config push, so link changes that happen
//! meanwhile wait in its 16 MiB buffer and are applied right after. Redis
//! being absent is retried with capped backoff until it comes (or a stop
//! signal arrives); progress shows in the log and the `STATUS=` line.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::engine::netlink::drain::{drain, request_dump, Drained};
use crate::engine::netlink::parse::{Event, NLM_F_DUMP_INTR};
use crate::engine::netlink::reader::LinkReader;
use crate::engine::netlink::request;
use crate::engine::netlink::ring::RecvRing;
use crate::engine::netlink::socket::{NetlinkError, NetlinkSocket, RcvBufOutcome};
use crate::engine::redis::client::{Client, ClientError};
use crate::engine::redis::reply::Verdict;
use crate::engine::runtime::config::Config;
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::logger::{self, LoggerFollow, RunLog};
use crate::engine::sonic::pst::{ProducerTable, PstSet, SET_SCRIPT_SHA};
use crate::engine::sonic::warm::{WarmKeys, WarmStart};
use crate::engine::startup::{Interrupt, StartError, StartupIo};
use crate::engine::sys::monotonic_ns;
use crate::port::follow::{old_interface, LinkSync};
use crate::port::keys::{PortKeys, DAEMON};
use crate::port::table::PortName;
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
    /// CONFIG_DB `LOGGER|portsyncd` as read, for the loop to follow.
    pub logger: LoggerFollow,
}

/// Start-up ended.
pub enum Started {
    /// Done: the loop takes over the event socket's reader; `dump_seq` is
    /// the last dump sequence used.
    Ready {
        info: Box<StartInfo>,
        reader: Box<LinkReader>,
        dump_seq: u32,
    },
    /// A stop signal arrived first.
    Stopped(i32),
}

/// One dump of every link on a request socket: the old-interface
/// candidates, or `None` if the kernel marked the dump interrupted.
fn snapshot_links(
    timeout: Duration,
    seq: u32,
) -> Result<Option<Vec<(i32, PortName)>>, NetlinkError> {
    let socket = NetlinkSocket::requests(timeout)?;
    socket
        .send(&request::getlink_dump(seq))
        .map_err(|source| NetlinkError::Sys {
            call: "sendto",
            source,
        })?;
    let mut buf = vec![0u8; 64 << 10];
    let mut old = Vec::new();
    let mut interrupted = false;
    socket.replies(seq, &mut buf, "link snapshot", |header, event| {
        interrupted |= header.flags & NLM_F_DUMP_INTR != 0;
        match event {
            Event::Link(link) => {
                old.extend(old_interface(&link));
                ControlFlow::Continue(())
            }
            Event::Done => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    })?;
    Ok((!interrupted).then_some(old))
}

/// A CONFIG_DB `PORT|<name>` entry: the name and its fields, as bytes
/// (copied to APPL_DB unchanged, UTF-8 or not).
type ConfigPort = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Read the reply to every set of a push: `Ok(true)` when all were
/// written, `Ok(false)` when a `NOSCRIPT` asks for the push again, the
/// first error otherwise. Every reply is read before judging, so the
/// connection stays in step.
fn read_push_replies(c: &mut Client, sets: &[PstSet]) -> Result<bool, ClientError> {
    let mut no_script = false;
    let mut failed = None;
    for s in sets {
        let v = c.read()?;
        match Verdict::of(v.error().map(str::as_bytes)) {
            Verdict::Done => {}
            Verdict::NoScript => no_script = true,
            Verdict::RetryLater | Verdict::Failed => {
                failed.get_or_insert(ClientError::Reply {
                    command: format!("EVALSHA set PORT_TABLE {}", String::from_utf8_lossy(&s.key)),
                    error: v.error().unwrap_or_default().to_string(),
                });
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(!no_script),
    }
}

/// The start-up sequence and what it needs.
pub struct Startup<'a> {
    pub cfg: &'a Config,
    pub dbs: &'a Databases,
    pub keys: &'a PortKeys,
    pub io: StartupIo<'a>,
    pub sync: &'a mut LinkSync,
}

impl Startup<'_> {
    /// Run the whole sequence; `ring` becomes the event socket's.
    pub fn run(self, ring: RecvRing) -> Result<Started, StartError> {
        match self.run_inner(ring) {
            Ok(s) => Ok(s),
            Err(Interrupt::Stop(sig)) => Ok(Started::Stopped(sig)),
            Err(Interrupt::Fatal(e)) => Err(e),
        }
    }

    /// SONiC's steps, in SONiC's order; each is one method below.
    fn run_inner(mut self, ring: RecvRing) -> Result<Started, Interrupt> {
        let began = Instant::now();
        let existing = self.snapshot_old_interfaces();
        self.io.notifier.status("starting: reading CONFIG_DB");
        let (switch_type, logger) = self.read_log_settings_and_switch_type()?;
        let start = self.warm_start()?;
        log_notice!(
            "{} start (switch_type {switch_type}, restore_count {})",
            if start.warm { "warm" } else { "cold" },
            start.restore_count
        );
        let old = if !start.warm && switch_type != "dpu" {
            existing
        } else {
            Vec::new()
        };
        self.sync
            .ignore_old_interfaces(old.iter().map(|(ifindex, _)| *ifindex));
        let (mut reader, rcvbuf) = self.subscribe(ring)?;
        let mut dump_seq = 0;
        request_dump(&reader, self.sync, &mut dump_seq);
        let config_ports = self.read_config_ports()?;
        if !start.warm {
            self.push_config_ports(&config_ports)?;
        }
        self.learn_configured_ports(&config_ports)?;
        self.initial_dump(&mut reader, &mut dump_seq)?;
        let old_interfaces = self.bring_down_old_interfaces(&old)?;
        let info = StartInfo {
            switch_type,
            warm: start.warm,
            restore_count: start.restore_count,
            configured_ports: config_ports.len(),
            old_interfaces,
            rcvbuf,
            elapsed: began.elapsed(),
            logger,
        };
        Ok(Started::Ready {
            info: Box::new(info),
            reader: Box::new(reader),
            dump_seq,
        })
    }

    /// Step 1: the log settings SONiC's way (CONFIG_DB `LOGGER|portsyncd`,
    /// registered with SONiC's defaults when incomplete; see
    /// `engine/sonic/logger.rs` for who wins), then `switch_type`.
    fn read_log_settings_and_switch_type(&self) -> Result<(String, LoggerFollow), Interrupt> {
        let logger = &self.keys.logger;
        let metadata_key = format!(
            "DEVICE_METADATA{}localhost",
            self.dbs.config.separator as char
        );
        let mut follow = LoggerFollow::new(RunLog {
            level: self.cfg.log.level.0,
            output: self.cfg.log.output.resolve(),
        });
        let switch_type = self.io.retry("switch_type", &self.dbs.config, |c| {
            // swss-common's linkToDb: two HGETs, one HSET of both fields.
            let level = c.call_ok(&[b"HGET", &logger.key, b"LOGLEVEL"])?;
            let output = c.call_ok(&[b"HGET", &logger.key, b"LOGOUTPUT"])?;
            let (register, moves) = follow.register(level.as_bytes(), output.as_bytes());
            if let Some([(f1, v1), (f2, v2)]) = &register {
                c.call_ok(&[b"HSET", &logger.key, f1, v1, f2, v2])?;
            }
            logger::apply(logger, moves, "configuration");
            let v = c.call_ok(&[b"HGET", metadata_key.as_bytes(), b"switch_type"])?;
            Ok(v.as_string().unwrap_or_else(|| "switch".to_string()))
        })?;
        Ok((switch_type, follow))
    }

    /// Step 2: warm start. The decision and the new count are made once, so a
    /// retry after a lost connection never increments twice.
    fn warm_start(&self) -> Result<WarmStart, Interrupt> {
        let keys = WarmKeys::new(self.dbs.state.separator, DAEMON);
        let mut decided: Option<WarmStart> = None;
        self.io.retry("warm-start check", &self.dbs.state, |c| {
            let start = match decided {
                Some(d) => d,
                None => *decided.insert(keys.decide(c)?),
            };
            keys.record(c, start)?;
            Ok(start)
        })
    }

    /// Step 3: netlink: subscribe (the dump request follows).
    fn subscribe(&self, ring: RecvRing) -> Result<(LinkReader, RcvBufOutcome), Interrupt> {
        let (netlink, rcvbuf) =
            NetlinkSocket::events(self.cfg.netlink.rcvbuf_bytes).map_err(StartError::Netlink)?;
        if !rcvbuf.forced {
            log_warn!(
                "SO_RCVBUFFORCE refused (needs CAP_NET_ADMIN); SO_RCVBUF gave {} bytes for {} asked, capped by net.core.rmem_max (raise it, see sysctl/99-portsyncd.conf)",
                rcvbuf.effective,
                rcvbuf.requested
            );
        } else {
            log_info!("netlink receive buffer: {} bytes", rcvbuf.effective);
        }
        Ok((LinkReader::new(netlink, ring), rcvbuf))
    }

    /// Step 4: CONFIG_DB `PORT|*`, in `KEYS` order as SONiC reads them.
    fn read_config_ports(&self) -> Result<Vec<ConfigPort>, Interrupt> {
        self.io.notifier.status("starting: reading CONFIG_DB PORT");
        let pattern = format!("PORT{}*", self.dbs.config.separator as char);
        let prefix_len = "PORT".len() + 1;
        self.io.retry("CONFIG_DB PORT", &self.dbs.config, |c| {
            let keys = c.call_ok(&[b"KEYS", pattern.as_bytes()])?;
            let names: Vec<&[u8]> = keys
                .items()
                .iter()
                .filter_map(|k| k.as_bytes())
                .filter(|k| k.len() > prefix_len)
                .collect();
            let cmds: Vec<Vec<Vec<u8>>> = names
                .iter()
                .map(|k| vec![b"HGETALL".to_vec(), k.to_vec()])
                .collect();
            let replies = c.pipeline_ok(&cmds)?;
            Ok(names
                .into_iter()
                .zip(replies)
                .map(|(k, v)| {
                    let fields = v
                        .pairs_bytes()
                        .into_iter()
                        .map(|(f, v)| (f.to_vec(), v.to_vec()))
                        .collect();
                    (k[prefix_len..].to_vec(), fields)
                })
                .collect())
        })
    }

    /// Steps 4 and 5: one pipeline to APPL_DB: load the script, every port through
    /// the ProducerStateTable, `PortConfigDone` with the count.
    fn push_config_ports(&self, config_ports: &[ConfigPort]) -> Result<(), Interrupt> {
        let count = config_ports.len().to_string();
        let mut sets: Vec<PstSet> = config_ports
            .iter()
            .map(|(name, fields)| {
                let f: Vec<(&[u8], &[u8])> = fields
                    .iter()
                    .map(|(a, b)| (a.as_slice(), b.as_slice()))
                    .collect();
                PstSet::from_bytes(name, &f)
            })
            .collect();
        sets.push(PstSet::new("PortConfigDone", &[("count", &count)]));
        self.io
            .notifier
            .status("starting: writing APPL_DB PORT_TABLE");
        let table = &self.keys.producer;
        self.io
            .retry("APPL_DB PORT_TABLE push", &self.dbs.appl, |c| loop {
                let mut out = Vec::new();
                ProducerTable::encode_script_load(&mut out);
                for s in &sets {
                    s.encode(table, &mut out);
                }
                c.send_raw(&out)?;
                let sha = c.read()?;
                if sha.as_bytes() != Some(SET_SCRIPT_SHA.as_bytes()) {
                    log_warn!(
                        "APPL_DB: SCRIPT LOAD answered {}, expected {SET_SCRIPT_SHA}",
                        crate::engine::runtime::repeat::cut(&format!("{sha:?}"), 200)
                    );
                }
                if read_push_replies(c, &sets)? {
                    log_notice!(
                        "PortConfigDone: {} ports pushed to APPL_DB PORT_TABLE",
                        config_ports.len()
                    );
                    return Ok(());
                }
                // A SCRIPT FLUSH raced us: the script is loaded first in the
                // next pipeline again.
                log_warn!("APPL_DB: NOSCRIPT during the port push; sending it again");
            })
    }

    /// Which configured ports APPL_DB `PORT_TABLE` already has (membership)
    /// and which already have `admin_status` (no need to wait for them);
    /// every configured port goes into the table.
    fn learn_configured_ports(&mut self, config_ports: &[ConfigPort]) -> Result<(), Interrupt> {
        let appl_prefix = &self.keys.appl_prefix;
        let presence: Vec<(bool, bool)> =
            self.io
                .retry("APPL_DB PORT_TABLE read", &self.dbs.appl, |c| {
                    let cmds: Vec<Vec<Vec<u8>>> = config_ports
                        .iter()
                        .map(|(name, _)| {
                            vec![b"HGETALL".to_vec(), [&appl_prefix[..], name].concat()]
                        })
                        .collect();
                    let replies = c.pipeline_ok(&cmds)?;
                    Ok(replies
                        .iter()
                        .map(|v| {
                            let pairs = v.pairs_bytes();
                            (
                                !pairs.is_empty(),
                                pairs.iter().any(|(f, _)| *f == b"admin_status"),
                            )
                        })
                        .collect())
                })?;
        let cfg_sep = self.dbs.config.separator as char;
        for ((name, _), (present, has_admin)) in config_ports.iter().zip(presence) {
            if !self.sync.ports.add_configured(name, present, has_admin) {
                log_warn!(
                    "CONFIG_DB PORT{cfg_sep}{}: not a usable interface name, ignored",
                    crate::engine::runtime::repeat::cut(
                        &format!("{:?}", String::from_utf8_lossy(name)),
                        200
                    )
                );
            }
        }
        Ok(())
    }

    /// The initial dump (and whatever else arrived meanwhile), read until
    /// it ends or [`INITIAL_DUMP_WAIT`] passes; the loop finishes it then.
    fn initial_dump(
        &mut self,
        reader: &mut LinkReader,
        dump_seq: &mut u32,
    ) -> Result<(), Interrupt> {
        self.io
            .notifier
            .status("starting: reading the kernel's links");
        let counters = self.sync.counters();
        let deadline = Instant::now() + INITIAL_DUMP_WAIT;
        while (self.sync.dump_running() || self.sync.dump_wanted()) && Instant::now() < deadline {
            let drained =
                drain(reader, self.sync, &counters, dump_seq, usize::MAX).map_err(|source| {
                    StartError::Netlink(NetlinkError::Sys {
                        call: "recv",
                        source,
                    })
                })?;
            let now = monotonic_ns();
            let next = self.sync.dump_timer(now);
            if self.sync.dump_due(now) {
                request_dump(reader, self.sync, dump_seq);
            } else if drained == Drained::Empty {
                // Nothing to read: wait for the kernel (or the dump's next
                // timer), at most 100 ms between looks at the signals.
                use std::os::fd::AsRawFd;
                let wait = next.map_or(100_000_000, |t| t.saturating_sub(now).min(100_000_000));
                let fd = reader.socket().as_raw_fd();
                let _ = crate::engine::redis::socket::wait_fd(
                    fd,
                    libc::POLLIN,
                    Duration::from_nanos(wait),
                );
                self.io.check_signals()?;
            }
        }
        if self.sync.dump_running() {
            log_warn!("the initial link dump did not end within {INITIAL_DUMP_WAIT:?}; continuing");
        }
        Ok(())
    }

    /// Before anything else: the netdevs that exist now and are named
    /// `Ethernet*`, the old interfaces of a cold start (SONiC takes this
    /// snapshot once, before it subscribes). Whatever is created after it
    /// is a port, however long Redis makes the start-up wait. A dump that
    /// fails or is interrupted is taken again (three tries), then the start
    /// goes on without old interfaces, with a warning.
    fn snapshot_old_interfaces(&self) -> Vec<(i32, PortName)> {
        let mut last_error = String::new();
        for seq in 1..=3 {
            match snapshot_links(self.io.timeout(), seq) {
                Ok(Some(old)) => {
                    log_info!("{} netdevs named Ethernet* exist at start", old.len());
                    return old;
                }
                Ok(None) => last_error = "interrupted (NLM_F_DUMP_INTR)".to_string(),
                Err(e) => last_error = e.to_string(),
            }
        }
        log_warn!("the snapshot of existing netdevs failed ({last_error}); no old interfaces");
        Vec::new()
    }

    /// Step 6: old interfaces: bring them down, by netlink request. Returns
    /// how many there were.
    fn bring_down_old_interfaces(&mut self, old: &[(i32, PortName)]) -> Result<usize, Interrupt> {
        if old.is_empty() {
            return Ok(0);
        }
        let requests = NetlinkSocket::requests(self.io.timeout()).map_err(StartError::Netlink)?;
        for (i, (ifindex, name)) in old.iter().enumerate() {
            let seq = i as u32 + 1;
            let what = format!("admin down of old interface {name} (ifindex {ifindex})");
            match requests.request_acked(&request::set_admin(seq, *ifindex, false), seq, &what) {
                Ok(()) => log_info!("brought down old interface {name} (ifindex {ifindex})"),
                Err(e) => log_warn!("{e}"),
            }
        }
        log_notice!("{} old interfaces brought down and ignored", old.len());
        Ok(old.len())
    }
}
