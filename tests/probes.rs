//! The daemons' USDT probes (src/engine/probes.rs) are in the binaries
//! that tests and packages use, where perf can place them: every probe of
//! provider `syncd` has its SystemTap note, and the code segment's file
//! offset equals its address (`-z separate-loadable-segments` in
//! .cargo/config.toml; with LLD's default layout perf 6.1 puts the
//! breakpoint inside another instruction). Read with binutils' `readelf`.

use std::collections::BTreeMap;
use std::process::Command;

fn readelf(args: &[&str], binary: &str) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(binary)
        .output()
        .expect("readelf (binutils; tools/install-deps installs it)");
    assert!(out.status.success(), "readelf {args:?} {binary}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(provider, name)` → the addresses of its SystemTap SDT notes.
fn probes(binary: &str) -> BTreeMap<(String, String), Vec<u64>> {
    let notes = readelf(&["-n", "--wide"], binary);
    let mut out: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let (mut provider, mut name) = (None, None);
    for line in notes.lines() {
        if let Some((_, p)) = line.split_once("Provider: ") {
            provider = Some(p.trim().to_string());
        } else if let Some((_, n)) = line.split_once("Name: ") {
            name = Some(n.trim().to_string());
        } else if let Some((_, rest)) = line.split_once("Location: ") {
            let at = rest.split(',').next().unwrap_or("");
            let at = u64::from_str_radix(at.trim_start_matches("0x"), 16).unwrap();
            if let (Some(p), Some(n)) = (provider.take(), name.take()) {
                out.entry((p, n)).or_default().push(at);
            }
        }
    }
    out
}

/// Every executable `LOAD` segment's file offset, address and size.
fn code_segments(binary: &str) -> Vec<(u64, u64, u64)> {
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    readelf(&["-lW"], binary)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD") && l.contains(" E "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (hex(f[1]), hex(f[2]), hex(f[5]))
        })
        .collect()
}

fn check(binary: &str, expected: &[&str]) {
    let found = probes(binary);
    let code = code_segments(binary);
    assert!(!code.is_empty(), "{binary}: no executable segment");
    for &(offset, vaddr, _) in &code {
        assert_eq!(
            offset, vaddr,
            "{binary}: code at file offset {offset:#x} mapped at {vaddr:#x}: perf would misplace the probes"
        );
    }
    for name in expected {
        let Some(sites) = found.get(&("syncd".to_string(), name.to_string())) else {
            panic!("{binary}: no sdt_syncd:{name} note; found {found:?}");
        };
        // At least one site in the code (a debug build keeps notes of
        // functions the linker dropped, at meaningless addresses).
        assert!(
            sites
                .iter()
                .any(|&at| code.iter().any(|&(_, v, len)| (v..v + len).contains(&at))),
            "{binary}: sdt_syncd:{name} at {sites:x?}, outside the code {code:x?}"
        );
    }
}

#[test]
fn portsyncd_carries_its_probes_where_perf_can_place_them() {
    check(
        env!("CARGO_BIN_EXE_portsyncd"),
        &[
            "netlink_recv",
            "port_apply",
            "redis_send",
            "redis_recv",
            "port_acked",
        ],
    );
}

#[test]
fn neighsyncd_carries_its_probes_where_perf_can_place_them() {
    check(
        env!("CARGO_BIN_EXE_neighsyncd"),
        &[
            "netlink_recv",
            "neigh_apply",
            "redis_send",
            "redis_recv",
            "neigh_acked",
        ],
    );
}
