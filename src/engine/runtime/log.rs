//! Plain log lines on stderr, which journald captures.
//!
//! Levels follow SONiC's names. Under systemd (`JOURNAL_STREAM` set) each
//! line starts with a `<N>` priority prefix that journald turns into the
//! record's priority; otherwise it starts with a UTC timestamp. A line is
//! formatted on the stack-side buffer of one `String` and written with one
//! `write(2)`, so lines from two threads never interleave.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Level {
    /// Parse a level name: ours (`error`, `warn`, `notice`, `info`, `debug`)
    /// or SONiC's `LOGLEVEL` values (`ERROR`, `WARN`, `NOTICE`, `INFO`,
    /// `DEBUG`, and the more severe `EMERG`, `ALERT`, `CRIT` read as `error`).
    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "emerg" | "alert" | "crit" | "error" | "err" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "notice" => Some(Level::Notice),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Notice => "NOTICE",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Notice as u8);
static JOURNAL: AtomicBool = AtomicBool::new(false);

/// Set up from the environment: journald prefixes when stderr is the journal.
pub fn init(level: Level) {
    JOURNAL.store(
        std::env::var_os("JOURNAL_STREAM").is_some(),
        Ordering::Relaxed,
    );
    set_level(level);
}

/// Change the level (config, SIGHUP, CONFIG_DB `LOGGER|portsyncd`).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Change the level and say so, in a line written under the more verbose
/// of the old and new levels (so lowering the level to `error` still
/// leaves a trace of why the log went quiet).
pub fn change_level(level: Level, why: &str) {
    if level == self::level() {
        return;
    }
    let louder = level > self::level();
    if louder {
        set_level(level);
    }
    if enabled(Level::Notice) {
        write(Level::Notice, format_args!("log level {level} ({why})"));
    }
    if !louder {
        set_level(level);
    }
}

/// The level in force.
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        3 => Level::Error,
        4 => Level::Warn,
        5 => Level::Notice,
        6 => Level::Info,
        _ => Level::Debug,
    }
}

/// Whether a line at `level` would be written.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Write one line. Use the `log_*!` macros.
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160);
    if JOURNAL.load(Ordering::Relaxed) {
        let _ = write!(line, "<{}>{}: ", level as u8, level.name());
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as i64;
        let (y, mo, d) = civil(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        let _ = write!(
            line,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z {} ",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60,
            now.subsec_micros(),
            level.name()
        );
    }
    let _ = line.write_fmt(args);
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::engine::runtime::log::enabled($level) {
            $crate::engine::runtime::log::write($level, format_args!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Error, $($arg)*) }; }
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Warn, $($arg)*) }; }
#[macro_export]
macro_rules! log_notice { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Notice, $($arg)*) }; }
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Info, $($arg)*) }; }
#[macro_export]
macro_rules! log_debug { ($($arg:tt)*) => { $crate::log_at!($crate::engine::runtime::log::Level::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_778), (2026, 11, 21));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn level_names_ours_and_sonics() {
        assert_eq!(Level::parse("NOTICE"), Some(Level::Notice));
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("CRIT"), Some(Level::Error));
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
    }
}
