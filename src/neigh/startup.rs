//! neighsyncd's start-up, in SONiC's order (`NEIGH_CONTRACT.md` §2, §7):
//!
//! 1. CONFIG_DB `LOGGER|neighsyncd` (registered when absent, as
//!    swss-common does) and the facts the rules read (dual-ToR, the
//!    link-local mode);
//! 2. the warm-start check: `WARM_RESTART_TABLE|neighsyncd restore_count`;
//! 3. warm only: `state` = `initialized`, the reconcile timer from
//!    CONFIG_DB, the ProducerStateTable staging cleared, APPL_DB
//!    `NEIGH_TABLE` read into the snapshot, `state` = `restored`, then the
//!    wait for `NEIGH_RESTORE_TABLE|Flags restored` (exit 1 past the
//!    timeout, as SONiC);
//! 4. the netlink socket, subscribed to links and neighbors; the loop then
//!    dumps links and neighbors and writes (warm: reconciles).
//!
//! Each Redis step is retried until Redis answers (engine/startup.rs).

use std::time::{Duration, Instant};

use crate::engine::netlink::reader::LinkReader;
use crate::engine::netlink::ring::RecvRing;
use crate::engine::netlink::socket::{NetlinkSocket, RcvBufOutcome, RTMGRP_LINK, RTMGRP_NEIGH};
use crate::engine::redis::client::{Client, ClientError};
use crate::engine::sonic::dbconfig::Databases;
use crate::engine::sonic::logger::{self, LoggerFollow, RunLog};
use crate::engine::sonic::pst::CLEAR_SCRIPT;
use crate::engine::sonic::warm::WarmStart;
use crate::engine::startup::{Interrupt, StartError, StartupIo};
use crate::neigh::context::{self, NeighConfig};
use crate::neigh::keys::NeighKeys;
use crate::neigh::warm::Snapshot;
use crate::{log_info, log_notice, log_warn};

/// SONiC's reconcile timer when CONFIG_DB sets none (seconds).
pub const DEFAULT_WARM_TIMER_S: u64 = 5;

/// What start-up hands the loop.
pub struct Started {
    pub reader: LinkReader,
    pub rcvbuf: RcvBufOutcome,
    pub config: NeighConfig,
    pub start: WarmStart,
    /// Warm: the snapshot and the reconcile timer (seconds).
    pub warm: Option<(Snapshot, u64)>,
    /// CONFIG_DB `LOGGER|neighsyncd` as read and registered.
    pub logger: LoggerFollow,
    pub elapsed: Duration,
}

/// How start-up ended.
pub enum Outcome {
    Ready(Box<Started>),
    /// A stop signal (its number).
    Stopped(i32),
    /// Warm start: the restore flag did not come in time (exit 1).
    RestoreTimeout,
}

/// The start-up's inputs.
pub struct Startup<'a> {
    pub dbs: &'a Databases,
    pub keys: &'a NeighKeys,
    pub io: StartupIo<'a>,
}

impl Startup<'_> {
    pub fn run(self, ring: RecvRing) -> Result<Outcome, StartError> {
        match self.run_inner(ring) {
            Ok(o) => Ok(o),
            Err(Interrupt::Stop(sig)) => Ok(Outcome::Stopped(sig)),
            Err(Interrupt::Fatal(e)) => Err(e),
        }
    }

    fn run_inner(self, ring: RecvRing) -> Result<Outcome, Interrupt> {
        let began = Instant::now();
        self.io.notifier.status("starting: reading CONFIG_DB");
        let logger = self.read_log_settings()?;
        let config = self.read_config()?;
        let start = self.warm_start()?;
        log_notice!(
            "{} start (restore_count {})",
            if start.warm { "warm" } else { "cold" },
            start.restore_count
        );
        let warm = if start.warm {
            let timer = self.warm_prepare()?;
            let snapshot = self.snapshot()?;
            if !self.wait_restored()? {
                return Ok(Outcome::RestoreTimeout);
            }
            Some((snapshot, timer))
        } else {
            None
        };
        let (reader, rcvbuf) = self.subscribe(ring)?;
        log_notice!("Listens to neigh messages...");
        Ok(Outcome::Ready(Box::new(Started {
            reader,
            rcvbuf,
            config,
            start,
            warm,
            logger,
            elapsed: began.elapsed(),
        })))
    }

    /// Step 1a: the log settings SONiC's way (CONFIG_DB
    /// `LOGGER|neighsyncd`, registered with SONiC's defaults when
    /// incomplete; see `engine/sonic/logger.rs` for who wins).
    fn read_log_settings(&self) -> Result<LoggerFollow, Interrupt> {
        let logger = &self.keys.logger;
        let mut follow = LoggerFollow::new(RunLog {
            level: self.io.cfg.log.level.0,
            output: self.io.cfg.log.output.resolve(),
        });
        self.io.retry("CONFIG_DB LOGGER", &self.dbs.config, |c| {
            // swss-common's linkToDb: two HGETs, one HSET of both fields.
            let level = c.call_ok(&[b"HGET", &logger.key, b"LOGLEVEL"])?;
            let output = c.call_ok(&[b"HGET", &logger.key, b"LOGOUTPUT"])?;
            let (register, moves) = follow.register(level.as_bytes(), output.as_bytes());
            if let Some([(f1, v1), (f2, v2)]) = &register {
                c.call_ok(&[b"HSET", &logger.key, f1, v1, f2, v2])?;
            }
            logger::apply(logger, moves, "configuration");
            Ok(())
        })?;
        Ok(follow)
    }

    /// Step 1b: the facts the rules read.
    fn read_config(&self) -> Result<NeighConfig, Interrupt> {
        let k = self.keys;
        self.io
            .retry("CONFIG_DB", &self.dbs.config, |c| context::read(c, k))
    }

    /// Step 2: warm start, decided once (a retry never counts twice).
    fn warm_start(&self) -> Result<WarmStart, Interrupt> {
        let keys = &self.keys.warm;
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

    /// Step 3a (warm): `state` = `initialized`, the timer, the staging
    /// cleared. Returns the timer in seconds.
    fn warm_prepare(&self) -> Result<u64, Interrupt> {
        let k = self.keys;
        self.io.retry("warm start", &self.dbs.state, |c| {
            c.call_ok(&[b"HSET", k.warm.table.as_bytes(), b"state", b"initialized"])?;
            Ok(())
        })?;
        let timer = self.io.retry("warm start timer", &self.dbs.config, |c| {
            let v = c.call_ok(&[b"HGET", &k.warm_timer_key, b"neighsyncd_timer"])?;
            Ok(v.as_string())
        })?;
        let timer = match timer.as_deref().and_then(parse_timer) {
            Some(t) => {
                log_notice!(
                    "getWarmStartTimer: Getting warmStartTimer for docker: swss, app: neighsyncd, value: {t}"
                );
                t
            }
            None => {
                log_notice!(
                    "getWarmStartTimer: warmStartTimer is not configured or invalid for docker: swss, app: neighsyncd"
                );
                DEFAULT_WARM_TIMER_S
            }
        };
        self.io
            .retry("ProducerStateTable clear", &self.dbs.appl, |c| {
                c.call_ok(&[b"SCRIPT", b"LOAD", CLEAR_SCRIPT.as_bytes()])?;
                let cmd = k.producer.clear_command();
                let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                c.call_ok(&args)?;
                Ok(())
            })?;
        Ok(timer)
    }

    /// Step 3b (warm): APPL_DB `NEIGH_TABLE` into the snapshot, then
    /// `state` = `restored`.
    fn snapshot(&self) -> Result<Snapshot, Interrupt> {
        let k = self.keys;
        let snapshot = self.io.retry("APPL_DB NEIGH_TABLE", &self.dbs.appl, |c| {
            read_table(c, &k.appl_prefix)
        })?;
        self.io.retry("warm start", &self.dbs.state, |c| {
            c.call_ok(&[b"HSET", k.warm.table.as_bytes(), b"state", b"restored"])?;
            Ok(())
        })?;
        log_notice!(
            "Restored appDB table to NEIGH_TABLE internal cache map ({} entries)",
            snapshot.len()
        );
        Ok(snapshot)
    }

    /// Step 3c (warm): wait for `NEIGH_RESTORE_TABLE|Flags restored` =
    /// `true`, asking once a second; false past the timeout.
    fn wait_restored(&self) -> Result<bool, Interrupt> {
        let timeout = Duration::from_secs(self.io.cfg.warm.restore_timeout_s);
        let began = Instant::now();
        let key = &self.keys.restore_flags;
        self.io
            .notifier
            .status("warm start: waiting for the neighbors' restore");
        loop {
            let v = self.io.retry("restore flag", &self.dbs.state, |c| {
                Ok(c.call_ok(&[b"HGET", key, b"restored"])?.as_string())
            })?;
            if v.as_deref() == Some("true") {
                log_info!(
                    "neighbors restored after {:.1} s",
                    began.elapsed().as_secs_f64()
                );
                return Ok(true);
            }
            if began.elapsed() > timeout {
                log_warn!(
                    "warm start: {} restored was not true within {} s; exiting",
                    String::from_utf8_lossy(key),
                    timeout.as_secs()
                );
                return Ok(false);
            }
            self.io.pause(Duration::from_secs(1))?;
        }
    }

    /// Step 4: the event socket, joined to the link and neighbor groups.
    fn subscribe(&self, ring: RecvRing) -> Result<(LinkReader, RcvBufOutcome), Interrupt> {
        let (netlink, rcvbuf) =
            NetlinkSocket::events_in(RTMGRP_LINK | RTMGRP_NEIGH, self.io.cfg.netlink.rcvbuf_bytes)
                .map_err(StartError::Netlink)?;
        if !rcvbuf.forced {
            log_warn!(
                "SO_RCVBUFFORCE refused (needs CAP_NET_ADMIN); SO_RCVBUF gave {} bytes for {} asked, capped by net.core.rmem_max",
                rcvbuf.effective,
                rcvbuf.requested
            );
        }
        Ok((LinkReader::new(netlink, ring), rcvbuf))
    }
}

/// Every `<prefix>*` hash (SONiC's `readTablesToMap`: `KEYS`, then
/// `HGETALL` each, pipelined; empty ones skipped).
pub fn read_table(c: &mut Client, prefix: &[u8]) -> Result<Snapshot, ClientError> {
    let pattern = [prefix, b"*"].concat();
    let keys: Vec<Vec<u8>> = c
        .call_ok(&[b"KEYS", &pattern])?
        .items()
        .iter()
        .filter_map(|v| v.as_bytes().map(|b| b.to_vec()))
        .collect();
    let mut out = Snapshot::new();
    for chunk in keys.chunks(1024) {
        let cmds: Vec<Vec<Vec<u8>>> = chunk
            .iter()
            .map(|k| vec![b"HGETALL".to_vec(), k.clone()])
            .collect();
        for (key, fields) in chunk.iter().zip(c.pipeline_ok(&cmds)?) {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = fields
                .pairs_bytes()
                .into_iter()
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect();
            if !pairs.is_empty() {
                out.insert(key[prefix.len()..].to_vec(), pairs);
            }
        }
    }
    Ok(out)
}

/// The timer as swss-common reads it: `strtoul(value, NULL, 0)` (decimal,
/// `0x` hex or leading-zero octal, leading blanks, trailing junk ignored),
/// valid from 1 to 9999.
pub fn parse_timer(value: &str) -> Option<u64> {
    let s = value.trim_start();
    let s = s.strip_prefix('+').unwrap_or(s);
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let end = digits
        .find(|ch: char| !ch.is_digit(radix))
        .unwrap_or(digits.len());
    let n = if end == 0 {
        0
    } else {
        u64::from_str_radix(&digits[..end], radix).ok()?
    };
    (1..=9999).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::parse_timer;

    #[test]
    fn the_timer_is_read_as_strtoul_base_0_reads_it() {
        assert_eq!(parse_timer("5"), Some(5));
        assert_eq!(parse_timer("  12"), Some(12));
        assert_eq!(parse_timer("0x10"), Some(16));
        assert_eq!(parse_timer("010"), Some(8));
        assert_eq!(parse_timer("7s"), Some(7));
        assert_eq!(parse_timer("0"), None);
        assert_eq!(parse_timer("10000"), None);
        assert_eq!(parse_timer("abc"), None);
        assert_eq!(parse_timer(""), None);
        assert_eq!(parse_timer("9999"), Some(9999));
    }
}
