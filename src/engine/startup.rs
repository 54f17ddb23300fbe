//! What a syncer's blocking start-up shares: Redis calls retried with
//! capped backoff until Redis answers (progress in the log and systemd's
//! `STATUS=` line), interrupted by a stop signal, and the errors no retry
//! fixes. Start-up blocks on purpose: there is nothing else to do until
//! Redis answers, and the netlink socket, subscribed early, keeps the
//! kernel's events meanwhile.

use std::fmt;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::engine::netlink::socket::NetlinkError;
use crate::engine::redis::client::{Client, ClientError};
use crate::engine::runtime::config::Config;
use crate::engine::runtime::notify::Notifier;
use crate::engine::runtime::signals::{Signal, Signals};
use crate::engine::sonic::dbconfig::Database;
use crate::{log_info, log_notice, log_warn};

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

/// Why a start-up step did not finish.
pub enum Interrupt {
    /// A stop signal (its number).
    Stop(i32),
    /// A failure no retry fixes.
    Fatal(StartError),
}

impl From<StartError> for Interrupt {
    fn from(e: StartError) -> Self {
        Interrupt::Fatal(e)
    }
}

/// What a blocking start-up waits with.
pub struct StartupIo<'a> {
    pub cfg: &'a Config,
    pub signals: &'a Signals,
    pub notifier: &'a Notifier,
}

impl StartupIo<'_> {
    /// The deadline of one Redis call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.redis.timeout_ms)
    }

    /// Sleep `d`, returning early on a stop signal. SIGHUP is noted and ignored
    /// (nothing to reload yet).
    pub fn pause(&self, d: Duration) -> Result<(), Interrupt> {
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

    /// Handle the signals that came: a stop interrupts.
    pub fn check_signals(&self) -> Result<(), Interrupt> {
        while let Some(sig) = self.signals.read().map_err(StartError::Signals)? {
            match sig {
                Signal::Stop(n) => return Err(Interrupt::Stop(n)),
                Signal::Reload => log_notice!("SIGHUP during start-up: nothing to reload yet"),
            }
        }
        Ok(())
    }

    /// Run `step` until it succeeds, backing off between attempts.
    pub fn retry<T>(
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
}
