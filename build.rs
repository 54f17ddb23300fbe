//! Stamps the build with the commit it was built from, for
//! `portsyncd_build_info{commit="…"}`: `SYNCD_COMMIT` if the build sets
//! it (a packager building outside git), else `git rev-parse HEAD`, else
//! `unknown`. Local only: no network.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string())
}

fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SYNCD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let from_env = std::env::var("SYNCD_COMMIT").ok().filter(|c| is_commit(c));
    let commit = from_env
        .clone()
        .or_else(|| git(&["rev-parse", "HEAD"]).filter(|c| is_commit(c)))
        .unwrap_or_else(|| "unknown".into());
    if from_env.is_none() {
        // Rebuild when HEAD moves: HEAD itself, the branch it names, and
        // packed refs (only files that exist: a missing one would make
        // every build rerun this).
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        for path in watched.into_iter().flatten() {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=SYNCD_COMMIT={commit}");
}
