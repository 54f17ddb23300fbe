//! Log lines as syslog datagrams on `/dev/log`, written by hand the way
//! glibc's `syslog(3)` writes them for SONiC's daemons.
//!
//! swss-common's `Logger` calls `vsyslog` without ever calling `openlog`
//! (common/logger.cpp; portsyncd.cpp only calls `linkToDbNative`), so
//! glibc's defaults apply: the identifier is the program's name, no
//! `[pid]` (no `LOG_PID`), facility `LOG_USER`. A datagram is
//! `<PRI>Mmm dd hh:mm:ss portsyncd: text` (RFC 3164 without the host
//! name, local time), PRI = facility × 8 + severity. Matching it keeps the
//! daemon's lines under the tag and facility SONiC's rsyslog rules and
//! operators' greps expect of portsyncd; the receiver learns the pid from
//! the socket's credentials anyway (journald's `_PID`, rsyslog's imuxsock).
//!
//! Unlike glibc, which sends on a blocking socket (a stalled syslog daemon
//! stalls the caller), the socket is non-blocking, so no thread ever waits
//! for the syslog daemon:
//!
//! - its queue full (`EAGAIN`): the line is dropped and counted
//!   ([`lines_dropped`]), and the next line that gets through is followed
//!   by one saying how many were dropped. Not written to stderr instead:
//!   in SONiC's swss container supervisord forwards stderr to the same
//!   syslog, so the line would reach the same full queue by a detour, and
//!   a pipe to a stalled reader can block the writer;
//! - gone (`/dev/log` missing, nobody bound to it, the syslog daemon
//!   restarting): the line goes to stderr instead, counted
//!   ([`lines_to_stderr`]), since a syslog that is down would lose every
//!   line while stderr is kept by whoever started the daemon. A connect is
//!   tried again at once after a loss (a restarted daemon has usually
//!   bound its new socket already), then at most once a second; the first
//!   line through says how many went to stderr meanwhile.

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::runtime::log::Level;

/// The syslog socket's usual path.
pub const DEV_LOG: &str = "/dev/log";
/// `LOG_USER`, glibc's facility when `openlog` was never called.
pub const FACILITY_USER: u8 = 1;
/// The wait between connect attempts while the socket is gone.
const RETRY: Duration = Duration::from_secs(1);

static LINES_DROPPED: AtomicU64 = AtomicU64::new(0);
static LINES_TO_STDERR: AtomicU64 = AtomicU64::new(0);
static RECONNECTS: AtomicU64 = AtomicU64::new(0);

/// Lines dropped because the syslog socket's queue was full (or the line
/// too long for a datagram), since the process started.
pub fn lines_dropped() -> u64 {
    LINES_DROPPED.load(Ordering::Relaxed)
}

/// Lines written to stderr because the syslog socket was gone.
pub fn lines_to_stderr() -> u64 {
    LINES_TO_STDERR.load(Ordering::Relaxed)
}

/// Connections to the syslog socket made again after it went away.
pub fn reconnects() -> u64 {
    RECONNECTS.load(Ordering::Relaxed)
}

/// `<PRI>`'s number: facility × 8 + severity (syslog's severities are our
/// levels' numbers).
pub fn priority(facility: u8, level: Level) -> u8 {
    facility * 8 + level as u8
}

/// A local time, as the datagram header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// 0 = January.
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Stamp {
    /// Now, in the local time zone (UTC when the C library cannot tell).
    pub fn now() -> Stamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value (integers and a null
        // zone name pointer) for localtime_r to overwrite.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals for the duration of the
        // call; localtime_r is the thread-safe variant and keeps neither.
        let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
        if !ok {
            return Stamp {
                month: 0,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
            };
        }
        Stamp {
            month: tm.tm_mon.clamp(0, 11) as u8,
            day: tm.tm_mday.clamp(1, 31) as u8,
            hour: tm.tm_hour.clamp(0, 23) as u8,
            minute: tm.tm_min.clamp(0, 59) as u8,
            // 60 is a leap second.
            second: tm.tm_sec.clamp(0, 60) as u8,
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The datagram for one line, into `out` (cleared first): glibc's
/// `<PRI>%h %e %T ident: text`, the day padded with a space.
pub fn format_datagram(
    out: &mut String,
    facility: u8,
    level: Level,
    stamp: Stamp,
    ident: &str,
    text: &str,
) {
    out.clear();
    let month = MONTHS[usize::from(stamp.month) % 12];
    let _ = write!(
        out,
        "<{}>{month} {:>2} {:02}:{:02}:{:02} {ident}: {text}",
        priority(facility, level),
        stamp.day,
        stamp.hour,
        stamp.minute,
        stamp.second
    );
}

/// What became of a line.
#[derive(Debug)]
pub enum Sent {
    Sent,
    /// The socket's queue was full (or the line too long): dropped, counted.
    Dropped,
    /// No syslog to send to: the caller writes the line elsewhere.
    /// `first` is true for the first such line since it went away, with
    /// the error that said so.
    Gone {
        first: bool,
        error: io::Error,
    },
}

/// What one send did, before counting.
enum Outcome {
    Sent,
    /// Queue full, or too long: the line is dropped.
    Busy,
    Gone(io::Error),
}

/// Whether a send error means the receiving end is gone (connect again)
/// rather than busy.
fn gone(e: &io::Error) -> bool {
    !matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::ENOBUFS | libc::EMSGSIZE | libc::EINTR)
    )
}

/// A non-blocking connection to the syslog socket, reconnected when it
/// goes away, and the writer of one daemon's datagrams on it.
#[derive(Debug)]
pub struct Syslog {
    ident: String,
    facility: u8,
    path: PathBuf,
    sock: Option<UnixDatagram>,
    /// No connect attempt before this, after one failed.
    retry_at: Option<Instant>,
    /// Connected once: the next connect is a reconnect.
    connected_before: bool,
    /// Lines dropped since the last one through.
    dropped: u64,
    /// Lines written to stderr since the socket went away.
    diverted: u64,
    /// The datagram being built, kept to avoid allocating per line.
    buf: String,
}

impl Syslog {
    /// A writer for `ident` (the daemon's name) on `path`; it connects at
    /// the first line.
    pub fn new(ident: &str, facility: u8, path: &Path) -> Syslog {
        Syslog {
            ident: ident.to_string(),
            facility,
            path: path.to_path_buf(),
            sock: None,
            retry_at: None,
            connected_before: false,
            dropped: 0,
            diverted: 0,
            buf: String::with_capacity(256),
        }
    }

    /// The socket's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Send one line at `level`. After the first line through following a
    /// gap, a line says what happened in the gap.
    pub fn write(&mut self, level: Level, text: &str) -> Sent {
        self.write_at(level, text, Instant::now())
    }

    /// [`write`](Syslog::write) at `now` (for the reconnect wait).
    pub fn write_at(&mut self, level: Level, text: &str, now: Instant) -> Sent {
        let stamp = Stamp::now();
        let mut buf = std::mem::take(&mut self.buf);
        format_datagram(&mut buf, self.facility, level, stamp, &self.ident, text);
        let sent = match self.send(buf.as_bytes(), now) {
            Outcome::Sent => {
                self.say_gaps(stamp, &mut buf, now);
                Sent::Sent
            }
            Outcome::Busy => {
                self.dropped += 1;
                LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
                Sent::Dropped
            }
            Outcome::Gone(error) => {
                self.diverted += 1;
                LINES_TO_STDERR.fetch_add(1, Ordering::Relaxed);
                Sent::Gone {
                    first: self.diverted == 1,
                    error,
                }
            }
        };
        self.buf = buf;
        sent
    }

    /// Lines saying how many lines went to stderr or were dropped, once
    /// the socket takes lines again. A note that does not get through is
    /// not counted itself: the next one says the same, with the new total.
    fn say_gaps(&mut self, stamp: Stamp, buf: &mut String, now: Instant) {
        if self.diverted > 0 {
            let text = format!(
                "{} answers again; {} log lines went to stderr meanwhile",
                self.path.display(),
                self.diverted
            );
            format_datagram(buf, self.facility, Level::Notice, stamp, &self.ident, &text);
            if let Outcome::Sent = self.send(buf.as_bytes(), now) {
                self.diverted = 0;
            }
        }
        if self.dropped > 0 {
            let text = format!(
                "{} log lines dropped: {} was full",
                self.dropped,
                self.path.display()
            );
            format_datagram(buf, self.facility, Level::Warn, stamp, &self.ident, &text);
            if let Outcome::Sent = self.send(buf.as_bytes(), now) {
                self.dropped = 0;
            }
        }
    }

    /// One datagram: connect when needed, a second try right after a
    /// connected socket fails (the syslog daemon restarted and its new
    /// socket is usually there already).
    fn send(&mut self, datagram: &[u8], now: Instant) -> Outcome {
        let mut last = None;
        for _ in 0..2 {
            if self.sock.is_none() {
                if let Err(error) = self.connect(now) {
                    return Outcome::Gone(error);
                }
            }
            let Some(sock) = &self.sock else {
                break;
            };
            match sock.send(datagram) {
                Ok(_) => return Outcome::Sent,
                Err(e) if !gone(&e) => return Outcome::Busy,
                Err(e) => {
                    self.sock = None;
                    last = Some(e);
                }
            }
        }
        // Connected twice and refused twice: wait before the next attempt.
        self.retry_at = Some(now + RETRY);
        Outcome::Gone(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOTCONN)))
    }

    /// A connected socket, or why not; at most one attempt per [`RETRY`]
    /// after a failure.
    fn connect(&mut self, now: Instant) -> io::Result<()> {
        if self.retry_at.is_some_and(|t| now < t) {
            return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
        }
        let attempt = UnixDatagram::unbound().and_then(|s| {
            s.set_nonblocking(true)?;
            s.connect(&self.path)?;
            Ok(s)
        });
        match attempt {
            Ok(s) => {
                if self.connected_before {
                    RECONNECTS.fetch_add(1, Ordering::Relaxed);
                }
                self.connected_before = true;
                self.retry_at = None;
                self.sock = Some(s);
                Ok(())
            }
            Err(e) => {
                self.retry_at = Some(now + RETRY);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(month: u8, day: u8) -> Stamp {
        Stamp {
            month,
            day,
            hour: 7,
            minute: 5,
            second: 9,
        }
    }

    #[test]
    fn priority_is_facility_times_eight_plus_severity() {
        assert_eq!(priority(FACILITY_USER, Level::Error), 11);
        assert_eq!(priority(FACILITY_USER, Level::Warn), 12);
        assert_eq!(priority(FACILITY_USER, Level::Notice), 13);
        assert_eq!(priority(FACILITY_USER, Level::Info), 14);
        assert_eq!(priority(FACILITY_USER, Level::Debug), 15);
        // LOG_DAEMON, LOG_LOCAL7
        assert_eq!(priority(3, Level::Notice), 29);
        assert_eq!(priority(23, Level::Debug), 191);
    }

    /// Byte for byte what glibc 2.36's `syslog(LOG_NOTICE, …)` sends from a
    /// program called portsyncd that never called `openlog`.
    #[test]
    fn datagrams_are_glibcs() {
        let mut out = String::new();
        format_datagram(
            &mut out,
            FACILITY_USER,
            Level::Notice,
            stamp(6, 2),
            "portsyncd",
            "cold start",
        );
        assert_eq!(out, "<13>Jul  2 07:05:09 portsyncd: cold start");
        format_datagram(
            &mut out,
            FACILITY_USER,
            Level::Error,
            stamp(11, 31),
            "neighsyncd",
            "x",
        );
        assert_eq!(out, "<11>Dec 31 07:05:09 neighsyncd: x");
    }

    /// A receiver at `dir`/log (a stale socket file replaced).
    fn receiver(dir: &Path) -> UnixDatagram {
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        UnixDatagram::bind(&path).unwrap()
    }

    fn drain(r: &UnixDatagram) -> Vec<String> {
        r.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// A receiver that never reads: the writer never waits; what does not
    /// fit is dropped and counted, and said once lines get through again.
    #[test]
    fn a_full_socket_drops_lines_without_waiting_and_says_so_later() {
        let tmp = testbed::TempDir::new().unwrap();
        let dir = tmp.path();
        let r = receiver(dir);
        let mut s = Syslog::new("portsyncd", FACILITY_USER, &dir.join("log"));
        let before = lines_dropped();
        let began = Instant::now();
        let mut dropped = 0;
        // Far more than the default queue (net.unix.max_dgram_qlen 512) or
        // the send buffer holds.
        for i in 0..5000 {
            if let Sent::Dropped = s.write(Level::Info, &format!("line {i}")) {
                dropped += 1;
            }
        }
        assert!(began.elapsed() < Duration::from_secs(5), "it waited");
        assert!(dropped > 0, "nothing dropped");
        assert!(lines_dropped() >= before + dropped);
        let got = drain(&r);
        assert_eq!(got.len() + dropped as usize, 5000);
        assert!(matches!(s.write(Level::Error, "after"), Sent::Sent));
        let got = drain(&r);
        assert_eq!(got[0].split_once(": ").unwrap().1, "after");
        let note = format!(
            "<12>{} portsyncd: {dropped} log lines dropped: {} was full",
            &got[1][4..19],
            dir.join("log").display()
        );
        assert_eq!(got[1], note);
    }

    /// The syslog daemon restarts: the lines meanwhile go elsewhere (the
    /// caller's stderr), a connect is tried again at once and then once a
    /// second, and the first line through says how many went elsewhere.
    #[test]
    fn a_socket_gone_and_back_is_reconnected() {
        let tmp = testbed::TempDir::new().unwrap();
        let dir = tmp.path();
        let path = dir.join("log");
        let mut s = Syslog::new("neighsyncd", FACILITY_USER, &path);
        let t0 = Instant::now();
        let r = receiver(dir);
        assert!(matches!(s.write_at(Level::Notice, "one", t0), Sent::Sent));
        drop(r);
        std::fs::remove_file(&path).unwrap();
        let reconnects_before = reconnects();
        match s.write_at(Level::Notice, "two", t0) {
            Sent::Gone { first: true, error } => {
                assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}")
            }
            other => panic!("{other:?}"),
        }
        let r = receiver(dir);
        // Within the second after the failure: not tried again.
        assert!(matches!(
            s.write_at(Level::Notice, "three", t0 + Duration::from_millis(500)),
            Sent::Gone { first: false, .. }
        ));
        let later = t0 + RETRY + Duration::from_millis(1);
        assert!(matches!(
            s.write_at(Level::Notice, "four", later),
            Sent::Sent
        ));
        assert_eq!(reconnects(), reconnects_before + 1);
        let got: Vec<String> = drain(&r)
            .iter()
            .map(|d| d.split_once("neighsyncd: ").unwrap().1.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "four".to_string(),
                format!(
                    "{} answers again; 2 log lines went to stderr meanwhile",
                    path.display()
                )
            ]
        );
    }

    #[test]
    fn only_a_busy_socket_is_not_gone() {
        for busy in [libc::EAGAIN, libc::ENOBUFS, libc::EMSGSIZE] {
            assert!(!gone(&io::Error::from_raw_os_error(busy)), "{busy}");
        }
        for lost in [
            libc::ECONNREFUSED,
            libc::ENOTCONN,
            libc::ENOENT,
            libc::ECONNRESET,
        ] {
            assert!(gone(&io::Error::from_raw_os_error(lost)), "{lost}");
        }
    }
}
