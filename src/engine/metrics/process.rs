//! The standard `process_*` metrics, read from `/proc/self` by the metrics
//! thread at each scrape (the loop never touches them).
//!
//! Parsing is pure ([`ProcessStats::parse`]); [`ProcessStats::read`] only
//! gathers the files.

use std::io;

/// What one scrape shows of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time of every thread, in seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft `RLIMIT_NOFILE`; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// What `/proc` said that could not be read as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl ProcessStats {
    /// Read `/proc/self/{stat,limits,fd}` and `/proc/stat`.
    pub fn read() -> io::Result<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        let limits = std::fs::read_to_string("/proc/self/limits")?;
        let system = std::fs::read_to_string("/proc/stat")?;
        let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
        // SAFETY: sysconf reads a system constant; no pointers involved.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let (Ok(ticks), Ok(page)) = (u64::try_from(ticks), u64::try_from(page)) else {
            return Err(io::Error::other("sysconf: no clock tick or page size"));
        };
        ProcessStats::parse(&stat, &limits, &system, open_fds, ticks, page)
            .map_err(|ParseError(why)| io::Error::other(format!("reading /proc: {why}")))
    }

    /// The stats from the text of `/proc/self/stat`, `/proc/self/limits`
    /// and `/proc/stat`, the open fd count, clock ticks per second and the
    /// page size.
    pub fn parse(
        stat: &str,
        limits: &str,
        system: &str,
        open_fds: u64,
        ticks: u64,
        page: u64,
    ) -> Result<ProcessStats, ParseError> {
        if ticks == 0 {
            return Err(ParseError("zero clock ticks per second"));
        }
        // The command name may hold spaces and parentheses: fields are
        // counted after the last ')'. Index 0 is field 3 (state).
        let after = stat
            .rsplit_once(')')
            .ok_or(ParseError("/proc/self/stat without ')'"))?
            .1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| -> Result<u64, ParseError> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or(ParseError("/proc/self/stat field missing or not a number"))
        };
        let (utime, stime, start, vsize, rss) =
            (field(11)?, field(12)?, field(19)?, field(20)?, field(21)?);
        let boot: u64 = system
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .ok_or(ParseError("/proc/stat without btime"))?;
        let max_fds = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or(ParseError("/proc/self/limits without Max open files"))?;
        let max_fds = match max_fds {
            "unlimited" => None,
            n => Some(
                n.parse()
                    .map_err(|_| ParseError("Max open files is not a number"))?,
            ),
        };
        Ok(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / ticks as f64,
            resident_bytes: rss.saturating_mul(page),
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot as f64 + start as f64 / ticks as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `/proc/<pid>/stat` line, its command name made awkward.
    const STAT: &str = "4242 (port syncd) x) S 1 4242 4242 0 -1 4194560 1113 0 0 0 250 125 0 0 20 0 3 0 12345 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
    const SYSTEM: &str = "cpu  1 2 3 4\nintr 5\nctxt 6\nbtime 1700000000\nprocesses 7\n";

    #[test]
    fn stat_limits_and_btime_parse() {
        let s = ProcessStats::parse(STAT, LIMITS, SYSTEM, 9, 100, 4096).unwrap();
        assert_eq!(s.cpu_seconds, 3.75);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!((s.open_fds, s.max_fds), (9, Some(1024)));
        assert!(
            (s.start_time_seconds - 1_700_000_123.45).abs() < 1e-3,
            "{s:?}"
        );
        let unlimited = LIMITS.replace("1024     ", "unlimited");
        let s = ProcessStats::parse(STAT, &unlimited, SYSTEM, 9, 100, 4096).unwrap();
        assert_eq!(s.max_fds, None);
    }

    #[test]
    fn what_is_not_proc_is_refused() {
        assert!(ProcessStats::parse("4242 (x", LIMITS, SYSTEM, 1, 100, 4096).is_err());
        assert!(ProcessStats::parse("1 (x) S 1 2", LIMITS, SYSTEM, 1, 100, 4096).is_err());
        assert!(ProcessStats::parse(STAT, "", SYSTEM, 1, 100, 4096).is_err());
        assert!(ProcessStats::parse(STAT, LIMITS, "cpu 1\n", 1, 100, 4096).is_err());
        assert!(ProcessStats::parse(STAT, LIMITS, SYSTEM, 1, 0, 4096).is_err());
    }

    #[test]
    fn this_process_reads() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds >= 3);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0, "{s:?}");
    }
}
