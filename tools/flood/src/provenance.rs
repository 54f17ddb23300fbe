//! Where and when a result was measured, for the JSON documents: a figure
//! read months later means little without the time, the code and the CPU.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// `{"time", "git_commit", "cpu_model"}`, each null when unknown.
pub fn fields() -> Value {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| rfc3339_utc(d.as_secs()));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| cpu_model(&t));
    json!({
        "time": time,
        "git_commit": git_commit(),
        "cpu_model": cpu,
    })
}

/// Add [`fields`] to a JSON object.
pub fn stamp(doc: &mut Value) {
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), fields()) {
        doc.extend(extra);
    }
}

/// The commit of the checkout flood was built in (`git rev-parse HEAD`, run
/// beside the flood binary: target/release lies inside the checkout), or
/// None when there is none (an installed copy) or git is absent.
fn git_commit() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    // safe.directory: under sudo, root reads a checkout another user owns;
    // rev-parse only reads it.
    let out = Command::new("git")
        .args(["-c", "safe.directory=*", "-C"])
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && commit.len() >= 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(commit)
}

/// The first `model name` of `/proc/cpuinfo` text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (key, value) = l.split_once(':')?;
        (key.trim() == "model name")
            .then(|| value.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-02T04:45:30Z`).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian (year, month, day):
/// count in 400-year eras of 146,097 days, years starting in March so
/// that the leap day ends the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = era * 400 + yoe + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        // date -u -d @951782400: the leap day of a century leap year.
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(951_955_199), "2000-03-01T23:59:59Z");
        assert_eq!(rfc3339_utc(1_709_164_800), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn the_first_model_name_of_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\n\
                    model\t\t: 85\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\n\
                    processor\t: 1\nmodel name\t: other\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        // arm64 kernels print no model name.
        assert_eq!(cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n"), None);
    }
}
