//! What every flood JSON document must say about where it came from,
//! shared by the port tests (flood.rs) and the neighbor tests (neigh.rs).

use std::process::Command;

/// When, on what code and on what CPU a result was measured.
pub fn assert_provenance(doc: &serde_json::Value) {
    let time = doc["time"]
        .as_str()
        .unwrap_or_else(|| panic!("time: {doc:#}"));
    // 2026-12-02T04:45:30Z
    assert_eq!(time.len(), 20, "{time}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    // flood is built in this checkout: its commit, or null outside git.
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        doc["git_commit"].as_str().map(str::to_string),
        head,
        "{doc:#}"
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    if cpuinfo.contains("model name") {
        assert!(
            doc["cpu_model"].as_str().is_some_and(|m| !m.is_empty()),
            "{doc:#}"
        );
    }
}
