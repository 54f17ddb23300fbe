//! `portsyncd sysctl-check [FILE]` (and neighsyncd's): compare the kernel's live settings with
//! a sysctl.d profile, by default the one shipped in `sysctl/`.
//!
//! The profile is read in the format of sysctl.d(5) / sysctl.conf(5):
//! `key = value` lines, `#` and `;` comments, blank lines, a leading `-` on
//! a key that may be absent, `.` or `/` as the separator. Each key is read
//! from `/proc/sys` and compared field by field (whitespace-separated, so
//! `4096 131072 6291456` matches the tabs the kernel prints). The parsing
//! and the verdicts are pure; only [`read_live`] and [`run`] touch files.
//!
//! A few keys are ceilings ([`AT_LEAST`]: the socket buffer maxima): the
//! profile's value is a minimum, and a larger live value is not drift.
//! sysctl(8) still writes the profile's value as is, so the report says
//! when applying the profile would lower such a key.
//!
//! A comment `#sysctl-check: key = value` ([`CHECK_ONLY`]) is a setting
//! that only this check reads: sysctl(8) and systemd-sysctl skip it as a
//! comment, so applying the profile never writes it. The shipped profile
//! states its buffer minimum that way, so that `sysctl --system` can never
//! lower a larger value the host already has.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where `sysctl-check` looks when no file is given.
pub const DEFAULT_PROFILE: &str = "/etc/sysctl.d/99-portsyncd.conf";
/// The comment prefix of a setting only `sysctl-check` reads
/// (`#sysctl-check: net.core.rmem_max = 16777216`; `;` works as `#`).
pub const CHECK_ONLY: &str = "sysctl-check:";
/// Where the kernel shows its settings.
pub const PROC_SYS: &str = "/proc/sys";
/// Exit status: a key differs from the profile, is absent or unreadable.
pub const EXIT_DRIFT: u8 = 1;
/// Exit status: the profile cannot be read or parsed.
pub const EXIT_BAD_PROFILE: u8 = 2;

/// One `key = value` line of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key as written, without a leading `-`.
    pub key: String,
    /// The value as written, surrounding whitespace trimmed.
    pub value: String,
    /// Written `-key = value`: an absent key is not drift (sysctl.d(5)).
    pub optional: bool,
    /// Written `#sysctl-check: key = value` ([`CHECK_ONLY`]): checked here,
    /// never written by sysctl(8), which reads it as a comment.
    pub check_only: bool,
    /// 1-based line number in the profile.
    pub line: usize,
}

/// A line of a profile that is not a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// The line, trimmed.
    pub text: String,
    pub reason: &'static str,
}

/// Why a profile cannot be checked; the text names the file (and line).
#[derive(Debug)]
pub enum ProfileError {
    /// Cannot read {path}: {source}
    Read { path: PathBuf, source: io::Error },
    /// {path}:{line}: {reason}: {text}
    Line { path: PathBuf, error: LineError },
    /// {path}: no settings to check
    Empty { path: PathBuf },
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ProfileError::Line { path, error } => write!(
                f,
                "{}:{}: {}: {:?}",
                path.display(),
                error.line,
                error.reason,
                error.text
            ),
            ProfileError::Empty { path } => {
                write!(f, "{}: no settings to check", path.display())
            }
        }
    }
}

impl std::error::Error for ProfileError {}

/// Parse a profile. A key set twice keeps its last value, as when applied.
pub fn parse(text: &str) -> Result<Vec<Setting>, LineError> {
    let mut out: Vec<Setting> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut line = raw.trim();
        let mut check_only = false;
        if let Some(comment) = line.strip_prefix(['#', ';']) {
            match comment.trim_start().strip_prefix(CHECK_ONLY) {
                Some(rest) => {
                    line = rest.trim();
                    check_only = true;
                }
                None => continue,
            }
        }
        if line.is_empty() {
            continue;
        }
        let bad = |reason| LineError {
            line: i + 1,
            text: line.to_string(),
            reason,
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad("expected KEY = VALUE"))?;
        let key = key.trim();
        let (key, optional) = match key.strip_prefix('-') {
            Some(k) => (k.trim_start(), true),
            None => (key, false),
        };
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if key.starts_with('!') || key.contains(['*', '?', '[']) {
            return Err(bad("glob and '!' keys are not supported by sysctl-check"));
        }
        if key.contains(char::is_whitespace) {
            return Err(bad("a key holds no whitespace"));
        }
        let path = key_path(key);
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("not a sysctl key"));
        }
        out.retain(|s| key_path(&s.key) != path);
        out.push(Setting {
            key: key.to_string(),
            value: value.trim().to_string(),
            optional,
            check_only,
            line: i + 1,
        });
    }
    Ok(out)
}

/// The path of `key` under `/proc/sys`, as sysctl(8) maps it: when the
/// first separator is `.`, dots and slashes swap (`net.ipv4.conf.eth0/1.x`
/// is `net/ipv4/conf/eth0.1/x`); when it is `/`, the key is a path already.
pub fn key_path(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// Keys whose profile value is a minimum: ceilings on what a socket may ask
/// for (`SO_RCVBUF`, `SO_SNDBUF`, ancillary data). A higher ceiling, such as
/// the 16 MiB SONiC images set for `net.core.rmem_max`, takes nothing from
/// portsyncd; lowering it could take from another daemon.
pub const AT_LEAST: [&str; 3] = [
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.optmem_max",
];

/// Whether `key` (either separator) is one of [`AT_LEAST`].
pub fn is_at_least(key: &str) -> bool {
    let path = key_path(key);
    AT_LEAST.iter().any(|k| key_path(k) == path)
}

/// Whether two values are the same setting: the same whitespace-separated
/// fields in the same order.
pub fn same_value(expected: &str, actual: &str) -> bool {
    expected.split_whitespace().eq(actual.split_whitespace())
}

/// A key as the kernel shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// Its value (fields separated by single spaces).
    Value(String),
    /// No such key on this kernel (or in this namespace).
    Absent,
    /// It exists but cannot be read (write-only keys, permissions).
    Unreadable(String),
}

/// Read `key` under `root` (normally [`PROC_SYS`]).
pub fn read_live(root: &Path, key: &str) -> Live {
    match std::fs::read_to_string(root.join(key_path(key))) {
        Ok(v) => Live::Value(v.split_whitespace().collect::<Vec<_>>().join(" ")),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Live::Absent
        }
        Err(e) => Live::Unreadable(e.to_string()),
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The live value is the profile's.
    Ok,
    /// An [`AT_LEAST`] key whose live value is larger than the profile's:
    /// fine as it is, but `sysctl -p` of the profile would lower it.
    Above,
    /// The live value differs.
    Drift,
    /// The key does not exist here.
    Missing,
    /// An optional (`-key`) key that does not exist here.
    Skipped,
    /// The key exists but cannot be read.
    Unreadable,
}

impl Status {
    /// Whether this verdict fails the check.
    pub fn fails(self) -> bool {
        matches!(self, Status::Drift | Status::Missing | Status::Unreadable)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Above => "ABOVE",
            Status::Drift => "DRIFT",
            Status::Missing => "MISSING",
            Status::Skipped => "SKIPPED",
            Status::Unreadable => "UNREADABLE",
        }
    }
}

/// Judge one setting against the kernel's value. An [`AT_LEAST`] key is
/// compared as a number; a value that is not one is compared as text.
pub fn judge(setting: &Setting, live: &Live) -> Status {
    match live {
        Live::Value(v) if same_value(&setting.value, v) => Status::Ok,
        Live::Value(v) if is_at_least(&setting.key) => {
            match (setting.value.trim().parse::<u64>(), v.trim().parse::<u64>()) {
                (Ok(min), Ok(live)) if live > min => Status::Above,
                _ => Status::Drift,
            }
        }
        Live::Value(_) => Status::Drift,
        Live::Absent if setting.optional => Status::Skipped,
        Live::Absent => Status::Missing,
        Live::Unreadable(_) => Status::Unreadable,
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub expected: String,
    /// The live value, or why there is none.
    pub actual: String,
    pub status: Status,
    /// A [`CHECK_ONLY`] setting: applying the profile does not write it.
    pub check_only: bool,
}

/// Every setting of a profile with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    /// Judge `settings` against what `read` returns for each key.
    pub fn build(settings: &[Setting], mut read: impl FnMut(&str) -> Live) -> Report {
        let rows = settings
            .iter()
            .map(|s| {
                let live = read(&s.key);
                let status = judge(s, &live);
                let actual = match live {
                    Live::Value(v) => v,
                    Live::Absent => "(absent)".to_string(),
                    Live::Unreadable(e) => format!("(unreadable: {e})"),
                };
                let expected = s.value.split_whitespace().collect::<Vec<_>>().join(" ");
                Row {
                    key: s.key.clone(),
                    // One field, so the table stays one word per column.
                    expected: if is_at_least(&s.key) {
                        format!(">={expected}")
                    } else {
                        expected
                    },
                    actual,
                    status,
                    check_only: s.check_only,
                }
            })
            .collect();
        Report { rows }
    }

    /// The keys above their minimum.
    pub fn above(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.status == Status::Above)
    }

    /// The keys that `sysctl -p` of the profile would lower: above their
    /// minimum and written by the profile (not [`CHECK_ONLY`]).
    pub fn would_lower(&self) -> impl Iterator<Item = &Row> {
        self.above().filter(|r| !r.check_only)
    }

    /// How many keys fail the check.
    pub fn failures(&self) -> usize {
        self.rows.iter().filter(|r| r.status.fails()).count()
    }

    /// The report as an aligned table, one key per line, under a header.
    pub fn render(&self) -> String {
        let width = |f: fn(&Row) -> &str, title: &str| {
            self.rows
                .iter()
                .map(|r| f(r).len())
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let ws = width(|r| r.status.name(), "STATUS");
        let wk = width(|r| &r.key, "KEY");
        let we = width(|r| &r.expected, "EXPECTED");
        let mut out = String::new();
        let mut line = |a: &str, b: &str, c: &str, d: &str| {
            let l = format!("{a:<ws$}  {b:<wk$}  {c:<we$}  {d}");
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line("STATUS", "KEY", "EXPECTED", "ACTUAL");
        for r in &self.rows {
            line(r.status.name(), &r.key, &r.expected, &r.actual);
        }
        out
    }
}

/// Read and parse the profile at `path`.
pub fn load(path: &Path) -> Result<Vec<Setting>, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let settings = parse(&text).map_err(|error| ProfileError::Line {
        path: path.to_path_buf(),
        error,
    })?;
    if settings.is_empty() {
        return Err(ProfileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(settings)
}

/// The whole command against `proc_root`: the table on `out`, errors on
/// `err`; the exit status (0 all match, 1 drift, 2 unusable profile).
pub fn run_with(
    file: Option<&Path>,
    proc_root: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let path = file.unwrap_or(Path::new(DEFAULT_PROFILE));
    let settings = match load(path) {
        Ok(s) => s,
        Err(e) => {
            let name = crate::engine::runtime::config::daemon().name;
            let _ = writeln!(err, "{name}: sysctl-check: {e}");
            return EXIT_BAD_PROFILE;
        }
    };
    let report = Report::build(&settings, |key| read_live(proc_root, key));
    let failures = report.failures();
    let _ = out.write_all(report.render().as_bytes());
    let (n, file) = (report.rows.len(), path.display());
    let above = report.above().count();
    let would_lower = report.would_lower().count();
    // What `sysctl -p` of the profile would fix: a drifted key it writes.
    let fixed_by_applying = report
        .rows
        .iter()
        .any(|r| r.status.fails() && !r.check_only);
    let _ = if failures == 0 && above == 0 {
        writeln!(out, "all {n} keys match {file}")
    } else if failures == 0 {
        writeln!(out, "all {n} keys meet {file} ({above} above its minimum)")
    } else if !fixed_by_applying {
        writeln!(out, "{failures} of {n} keys differ from {file}")
    } else if would_lower == 0 {
        writeln!(
            out,
            "{failures} of {n} keys differ from {file}; apply it with: sysctl -p {file}"
        )
    } else {
        writeln!(
            out,
            "{failures} of {n} keys differ from {file}; set them with sysctl -w \
             (sysctl -p {file} would also lower the keys marked ABOVE)"
        )
    };
    for r in report.would_lower() {
        let _ = writeln!(
            out,
            "{}: {} is above the minimum {}: fine; the profile's line would \
             lower it, so raise that line to {} or drop it",
            r.key,
            r.actual,
            r.expected.trim_start_matches(">="),
            r.actual
        );
    }
    // A check-only key is never written by applying the profile: say how
    // to set it by hand (only ever upwards, for a minimum).
    for r in report
        .rows
        .iter()
        .filter(|r| r.check_only && r.status == Status::Drift)
    {
        let want = r.expected.trim_start_matches(">=");
        let _ = if is_at_least(&r.key) {
            writeln!(
                out,
                "{}: {} is below the minimum {want}; raise it with: sysctl -w {}={want} \
                 (the profile only checks it, so that applying it never lowers a larger value)",
                r.key, r.actual, r.key
            )
        } else {
            writeln!(
                out,
                "{}: {} is not {want}; set it with: sysctl -w {}=\"{want}\" \
                 (the profile only checks it)",
                r.key, r.actual, r.key
            )
        };
    }
    if failures == 0 {
        0
    } else {
        EXIT_DRIFT
    }
}

/// `<daemon> sysctl-check [FILE]` against the live `/proc/sys`.
pub fn run(file: Option<&Path>) -> u8 {
    run_with(
        file,
        Path::new(PROC_SYS),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str, line: usize) -> Setting {
        Setting {
            key: key.into(),
            value: value.into(),
            optional: false,
            check_only: false,
            line,
        }
    }

    #[test]
    fn parses_comments_blanks_and_settings() {
        let text = "\
# a comment
; another comment

net.core.rmem_max = 16777216
   kernel.sched_rt_runtime_us=950000   
net.ipv4.tcp_rmem = 4096\t131072   6291456
-net.core.does_not_exist = 1
";
        let s = parse(text).unwrap();
        assert_eq!(
            s,
            vec![
                setting("net.core.rmem_max", "16777216", 4),
                setting("kernel.sched_rt_runtime_us", "950000", 5),
                setting("net.ipv4.tcp_rmem", "4096\t131072   6291456", 6),
                Setting {
                    optional: true,
                    ..setting("net.core.does_not_exist", "1", 7)
                },
            ]
        );
    }

    #[test]
    fn an_empty_value_is_a_setting() {
        assert_eq!(
            parse("kernel.domainname =").unwrap(),
            vec![setting("kernel.domainname", "", 1)]
        );
    }

    #[test]
    fn the_last_of_a_repeated_key_wins_whatever_its_separator() {
        let s = parse("net.core.rmem_max = 1\nnet/core/rmem_max = 2\n").unwrap();
        assert_eq!(s, vec![setting("net/core/rmem_max", "2", 2)]);
    }

    #[test]
    fn errors_name_the_line_and_why() {
        let e = parse("# ok\nnet.core.rmem_max 16777216\n").unwrap_err();
        assert_eq!(
            e,
            LineError {
                line: 2,
                text: "net.core.rmem_max 16777216".into(),
                reason: "expected KEY = VALUE",
            }
        );
        assert_eq!(parse("= 1").unwrap_err().reason, "empty key");
        assert_eq!(parse("- = 1").unwrap_err().reason, "empty key");
        assert!(parse("net.ipv4.conf.*.rp_filter = 1")
            .unwrap_err()
            .reason
            .contains("glob"));
        assert!(parse("!net.ipv4.conf.all.rp_filter = 1")
            .unwrap_err()
            .reason
            .contains("glob"));
        assert_eq!(
            parse("net core = 1").unwrap_err().reason,
            "a key holds no whitespace"
        );
        for key in ["net..core", "../../etc/passwd", "net/./x", "net.core."] {
            assert_eq!(
                parse(&format!("{key} = 1")).unwrap_err().reason,
                "not a sysctl key",
                "{key}"
            );
        }
    }

    #[test]
    fn keys_map_to_paths_like_sysctl() {
        assert_eq!(key_path("net.core.rmem_max"), "net/core/rmem_max");
        assert_eq!(key_path("net/core/rmem_max"), "net/core/rmem_max");
        // A VLAN interface name holds a dot: written with '/' after a '.'.
        assert_eq!(
            key_path("net.ipv4.conf.eth0/1.rp_filter"),
            "net/ipv4/conf/eth0.1/rp_filter"
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.1/rp_filter"),
            "net/ipv4/conf/eth0.1/rp_filter"
        );
        assert_eq!(key_path("kernel"), "kernel");
    }

    #[test]
    fn values_compare_by_fields() {
        assert!(same_value("4096 131072 6291456", "4096\t131072\t6291456\n"));
        assert!(same_value("16777216", " 16777216 "));
        assert!(same_value("", "\n"));
        assert!(!same_value("4096 131072", "4096 131072 6291456"));
        assert!(!same_value("950000", "-1"));
        // No numeric reading: the kernel prints what the profile must say.
        assert!(!same_value("0x10", "16"));
    }

    #[test]
    fn verdicts() {
        let s = setting("net.core.rmem_max", "16777216", 1);
        let opt = Setting {
            optional: true,
            ..s.clone()
        };
        assert_eq!(judge(&s, &Live::Value("16777216".into())), Status::Ok);
        assert_eq!(judge(&s, &Live::Value("4194304".into())), Status::Drift);
        assert_eq!(judge(&s, &Live::Absent), Status::Missing);
        assert_eq!(judge(&opt, &Live::Absent), Status::Skipped);
        assert_eq!(judge(&opt, &Live::Value("1".into())), Status::Drift);
        assert_eq!(
            judge(&s, &Live::Unreadable("Permission denied".into())),
            Status::Unreadable
        );
        assert!(!Status::Ok.fails() && !Status::Skipped.fails() && !Status::Above.fails());
        assert!(Status::Drift.fails() && Status::Missing.fails() && Status::Unreadable.fails());
    }

    #[test]
    fn buffer_maxima_are_minimums_and_a_larger_live_value_is_fine() {
        for key in [
            "net.core.rmem_max",
            "net/core/wmem_max",
            "net.core.optmem_max",
        ] {
            assert!(is_at_least(key), "{key}");
            let s = setting(key, "16777216", 1);
            let v = |x: &str| Live::Value(x.into());
            assert_eq!(judge(&s, &v("16777216")), Status::Ok, "{key}");
            assert_eq!(judge(&s, &v("33554432")), Status::Above, "{key}");
            assert_eq!(judge(&s, &v("16777215")), Status::Drift, "{key}");
            // Not numbers: compared as text, so a difference is drift.
            assert_eq!(judge(&s, &v("16777216 1")), Status::Drift, "{key}");
            assert_eq!(judge(&setting(key, "lots", 1), &v("9")), Status::Drift);
        }
        // Every other key must be exactly the profile's value.
        for key in ["kernel.sched_rt_runtime_us", "net.core.somaxconn"] {
            assert!(!is_at_least(key), "{key}");
            let s = setting(key, "950000", 1);
            assert_eq!(judge(&s, &Live::Value("950001".into())), Status::Drift);
        }
    }

    #[test]
    fn report_lists_every_key_with_expected_and_actual() {
        let settings = parse(
            "net.core.rmem_max = 16777216\n\
             kernel.sched_rt_runtime_us = 950000\n\
             net.ipv4.tcp_rmem = 4096 131072 6291456\n\
             -net.core.gone = 1\n\
             net.core.gone_too = 1\n",
        )
        .unwrap();
        let report = Report::build(&settings, |key| match key {
            "net.core.rmem_max" => Live::Value("4194304".into()),
            "kernel.sched_rt_runtime_us" => Live::Value("950000".into()),
            "net.ipv4.tcp_rmem" => Live::Value("4096 131072 6291456".into()),
            _ => Live::Absent,
        });
        assert_eq!(report.failures(), 2);
        assert_eq!(
            report.render(),
            "\
STATUS   KEY                         EXPECTED             ACTUAL
DRIFT    net.core.rmem_max           >=16777216           4194304
OK       kernel.sched_rt_runtime_us  950000               950000
OK       net.ipv4.tcp_rmem           4096 131072 6291456  4096 131072 6291456
SKIPPED  net.core.gone               1                    (absent)
MISSING  net.core.gone_too           1                    (absent)
"
        );
    }

    /// A private directory standing in for `/proc/sys`.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(name: &str, keys: &[(&str, &str)]) -> FakeProc {
            let root = std::env::temp_dir()
                .join(format!("portsyncd-sysctl-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            for (path, value) in keys {
                let p = root.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, value).unwrap();
            }
            FakeProc(root)
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run_on(proc: &FakeProc, profile: &str) -> (u8, String, String) {
        let file = proc.0.join("profile.conf");
        std::fs::write(&file, profile).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(Some(&file), &proc.0, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn run_exits_by_verdict() {
        let proc = FakeProc::new(
            "run",
            &[
                ("net/core/rmem_max", "16777216\n"),
                ("net/ipv4/tcp_rmem", "4096\t131072\t6291456\n"),
            ],
        );
        let (code, out, err) = run_on(
            &proc,
            "net.core.rmem_max = 16777216\nnet.ipv4.tcp_rmem = 4096 131072 6291456\n",
        );
        assert_eq!((code, err.as_str()), (0, ""), "{out}");
        assert!(out.contains("all 2 keys match"), "{out}");

        let (code, out, _) = run_on(&proc, "net.ipv4.tcp_rmem = 4096 131072 4194304\n");
        assert_eq!(code, EXIT_DRIFT);
        assert!(
            out.lines().any(|l| l.split_whitespace().eq([
                "DRIFT",
                "net.ipv4.tcp_rmem",
                "4096",
                "131072",
                "4194304",
                "4096",
                "131072",
                "6291456"
            ])),
            "{out}"
        );
        assert!(out.contains("1 of 1 keys differ"), "{out}");
        assert!(out.contains("apply it with: sysctl -p"), "{out}");

        // SONiC sets rmem_max to 16 MiB already; a profile asking for less
        // is met, and the report says its line would lower the live value.
        let (code, out, _) = run_on(&proc, "net.core.rmem_max = 4194304\n");
        assert_eq!(code, 0, "{out}");
        assert!(
            out.lines().any(|l| l.split_whitespace().eq([
                "ABOVE",
                "net.core.rmem_max",
                ">=4194304",
                "16777216"
            ])),
            "{out}"
        );
        assert!(out.contains("all 1 keys meet"), "{out}");
        assert!(
            out.contains("net.core.rmem_max: 16777216 is above the minimum 4194304"),
            "{out}"
        );
        // With drift elsewhere, sysctl -p is not the advice: it would lower.
        let (code, out, _) = run_on(
            &proc,
            "net.core.rmem_max = 4194304\nnet.ipv4.tcp_rmem = 1 2 3\n",
        );
        assert_eq!(code, EXIT_DRIFT, "{out}");
        assert!(
            out.contains("would also lower the keys marked ABOVE"),
            "{out}"
        );
        assert!(!out.contains("apply it with"), "{out}");

        let (code, out, _) = run_on(&proc, "net.core.no_such_key = 1\n");
        assert_eq!(code, EXIT_DRIFT);
        assert!(out.contains("MISSING"), "{out}");

        // A key naming a directory cannot be read as a value.
        let (code, out, _) = run_on(&proc, "net.core = 1\n");
        assert_eq!(code, EXIT_DRIFT);
        assert!(out.contains("UNREADABLE"), "{out}");
    }

    /// `#sysctl-check: key = value` is a setting to this check and a
    /// comment to sysctl(8); any other comment stays a comment.
    #[test]
    fn a_check_only_comment_is_a_setting_sysctl_never_writes() {
        let s = parse(
            "# a comment: net.core.x = 1\n\
             #sysctl-check: net.core.rmem_max = 16777216\n\
             ;  sysctl-check:   -net.core.gone = 1\n\
             kernel.sched_rt_runtime_us = 950000\n\
             # sysctl-check:\n",
        )
        .unwrap();
        assert_eq!(
            s,
            vec![
                Setting {
                    check_only: true,
                    ..setting("net.core.rmem_max", "16777216", 2)
                },
                Setting {
                    check_only: true,
                    optional: true,
                    ..setting("net.core.gone", "1", 3)
                },
                setting("kernel.sched_rt_runtime_us", "950000", 4),
            ]
        );
        assert_eq!(
            parse("#sysctl-check: net.core.rmem_max 1")
                .unwrap_err()
                .line,
            1
        );
    }

    /// A check-only minimum: a larger live value is fine and no line would
    /// lower it; a smaller one is drift, with `sysctl -w` as the advice,
    /// never `sysctl -p` (which does not write it).
    #[test]
    fn a_check_only_minimum_is_checked_and_never_said_to_be_lowered() {
        let proc = FakeProc::new("checkonly", &[("net/core/rmem_max", "33554432\n")]);
        let profile = "#sysctl-check: net.core.rmem_max = 16777216\n";
        let (code, out, _) = run_on(&proc, profile);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("all 1 keys meet"), "{out}");
        assert!(!out.contains("would lower"), "{out}");

        let (code, out, _) = run_on(&proc, "#sysctl-check: net.core.rmem_max = 67108864\n");
        assert_eq!(code, EXIT_DRIFT, "{out}");
        assert!(out.contains("1 of 1 keys differ"), "{out}");
        assert!(!out.contains("sysctl -p"), "{out}");
        assert!(
            out.contains(
                "net.core.rmem_max: 33554432 is below the minimum 67108864; \
                 raise it with: sysctl -w net.core.rmem_max=67108864"
            ),
            "{out}"
        );
    }

    #[test]
    fn run_exits_2_naming_the_file_and_line() {
        let proc = FakeProc::new("bad", &[]);
        let (code, out, err) = run_on(&proc, "# fine\n\nnet.core.rmem_max\n");
        assert_eq!(code, EXIT_BAD_PROFILE);
        assert_eq!(out, "");
        let file = proc.0.join("profile.conf");
        assert_eq!(
            err,
            format!(
                "portsyncd: sysctl-check: {}:3: expected KEY = VALUE: \"net.core.rmem_max\"\n",
                file.display()
            )
        );

        let (code, _, err) = run_on(&proc, "# only comments\n");
        assert_eq!(code, EXIT_BAD_PROFILE);
        assert!(err.contains("no settings to check"), "{err}");

        let missing = proc.0.join("nope.conf");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(Some(&missing), &proc.0, &mut out, &mut err);
        assert_eq!(code, EXIT_BAD_PROFILE);
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(&format!("cannot read {}", missing.display())),
            "{err}"
        );
    }
}
