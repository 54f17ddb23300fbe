//! Entering a network namespace by name, as `ip netns exec` does: the
//! host-side `--namespace asicN` of a multi-ASIC switch.
//!
//! `setns(CLONE_NEWNET)` moves only the calling thread, and a thread
//! starts in its creator's namespace; so [`enter`] is called from `main`
//! before any thread exists and before any socket is opened. Everything
//! made after it (netlink sockets, the metrics listener, Redis over TCP)
//! is then in the namespace. Paths are not: unix sockets, `/dev/log` and
//! every file stay the host's, and so does `/sys`, which `ip netns exec`
//! remounts and we do not read.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Where `ip netns add` puts a namespace's handle.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Entering failed; each names the file.
#[derive(Debug)]
pub enum NetnsError {
    /// The handle could not be opened (no such namespace, usually).
    Open { path: PathBuf, source: io::Error },
    /// `setns` refused it: not a network namespace (`EINVAL`), or no
    /// `CAP_SYS_ADMIN` (`EPERM`).
    Enter { path: PathBuf, source: io::Error },
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsError::Open { path, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(
                    f,
                    "no network namespace {}: {source} (`ip netns list` shows the ones there are)",
                    path.display()
                )
            }
            NetnsError::Open { path, source } => {
                write!(
                    f,
                    "cannot open network namespace {}: {source}",
                    path.display()
                )
            }
            NetnsError::Enter { path, source } => write!(
                f,
                "cannot enter network namespace {}: {source}{}",
                path.display(),
                match source.raw_os_error() {
                    Some(libc::EPERM) => " (needs CAP_SYS_ADMIN)",
                    Some(libc::EINVAL) => " (not a network namespace)",
                    _ => "",
                }
            ),
        }
    }
}

impl std::error::Error for NetnsError {}

/// The handle of namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Move the calling thread into namespace `name` (see the module doc for
/// when to call it); the handle's path on success.
pub fn enter(name: &str) -> Result<PathBuf, NetnsError> {
    let path = path_of(name);
    enter_file(&path)?;
    Ok(path)
}

/// Move the calling thread into the network namespace whose handle is
/// `path`.
fn enter_file(path: &Path) -> Result<(), NetnsError> {
    let file = std::fs::File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Enter {
        path: path.to_path_buf(),
        source: io::Error::from(errno),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named() {
        let e = enter("no-such-namespace-for-a-test")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no network namespace /var/run/netns/no-such-namespace-for-a-test"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        // setns checks the file before any privilege: EINVAL, nothing
        // entered, whoever runs the test.
        let e = enter_file(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(
            e.contains("cannot enter network namespace /dev/null")
                && e.contains("(not a network namespace)"),
            "{e}"
        );
    }
}
