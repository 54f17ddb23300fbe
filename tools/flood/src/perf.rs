//! `--syscalls`: a writer's system calls during one phase, counted by
//! `perf stat -e raw_syscalls:sys_enter -p PID` (a tracepoint: exact, and it
//! works in these VMs, which have no hardware counters).
//!
//! perf starts with its events disabled (`-D -1`) and a control FIFO, so
//! counting starts exactly when flood says "enable" and perf acks it, not
//! whenever perf happens to be ready.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncd::engine::redis::socket::wait_fd;
use testbed::TempDir;

use crate::Error;

/// How long perf may take to start counting.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an ack before saying "enable" again (perf ignores
/// what was written to the FIFO before it started reading it).
const ACK_RETRY: Duration = Duration::from_millis(100);

/// A running `perf stat` counting one process's syscalls.
pub struct SyscallCount {
    child: Option<Child>,
    _dir: TempDir,
}

fn mkfifo(path: &Path) -> Result<(), Error> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::failed(format!("{}: NUL in path", path.display())))?;
    // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(Error::failed(format!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Open a FIFO read-write: never blocks, whoever opens the other end.
fn open_fifo(path: &Path) -> Result<File, Error> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::failed(format!("{}: {e}", path.display())))
}

impl SyscallCount {
    /// Start counting `pid`'s syscalls; returns once perf counts.
    pub fn start(pid: i32) -> Result<SyscallCount, Error> {
        let dir = TempDir::new().map_err(|e| Error::failed(format!("perf: {e}")))?;
        let ctl_path = dir.path().join("ctl");
        let ack_path = dir.path().join("ack");
        mkfifo(&ctl_path)?;
        mkfifo(&ack_path)?;
        let mut ctl = open_fifo(&ctl_path)?;
        let mut ack = open_fifo(&ack_path)?;
        let mut cmd = Command::new("perf");
        cmd.args([
            "stat",
            "-x",
            ",",
            "-e",
            "raw_syscalls:sys_enter",
            "-D",
            "-1",
        ])
        .arg("-p")
        .arg(pid.to_string())
        .arg(format!(
            "--control=fifo:{},{}",
            ctl_path.display(),
            ack_path.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        // SAFETY: runs in the child between fork and exec and only calls
        // sigemptyset(3) and pthread_sigmask(3) on a local set, which are
        // async-signal-safe. flood blocks SIGINT (signal::install) and
        // children inherit the mask; perf must act on the SIGINT that
        // ends its count.
        unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::failed(format!("--syscalls: starting perf: {e}")))?;
        let mut count = SyscallCount {
            child: Some(child),
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(c) = count.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = c.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err(Error::failed(format!(
                        "--syscalls: perf stat -p {pid} exited ({status}): {}",
                        err.trim()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "--syscalls: perf stat did not start counting within {START_TIMEOUT:?}"
                )));
            }
            ctl.write_all(b"enable\n")
                .map_err(|e| Error::failed(format!("perf control FIFO: {e}")))?;
            let ready = wait_fd(ack.as_raw_fd(), libc::POLLIN, ACK_RETRY)
                .map_err(|e| Error::failed(format!("perf ack FIFO: {e}")))?;
            if ready {
                let mut buf = [0u8; 64];
                let n = ack
                    .read(&mut buf)
                    .map_err(|e| Error::failed(format!("perf ack FIFO: {e}")))?;
                if buf[..n].starts_with(b"ack") {
                    return Ok(count);
                }
            }
        }
    }

    /// Stop perf and return the count.
    pub fn finish(mut self) -> Result<u64, Error> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::failed("--syscalls: perf already finished"));
        };
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::failed(
                        "--syscalls: perf did not stop on SIGINT; killed it",
                    ));
                }
            }
        }
        let mut text = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        parse_count(&text).ok_or_else(|| {
            Error::failed(format!(
                "--syscalls: no raw_syscalls:sys_enter count in perf's output: {}",
                text.trim()
            ))
        })
    }
}

impl Drop for SyscallCount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The count of `perf stat -x ,` output; `<not counted>` (no syscall at
/// all while enabled) is 0.
fn parse_count(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.contains(",raw_syscalls:sys_enter,"))?;
    let first = line.split(',').next()?;
    if first.starts_with('<') {
        return Some(0);
    }
    first.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn perf_csv_lines() {
        let text =
            "Events disabled\nEvents enabled\n11829,,raw_syscalls:sys_enter,114540916,100.00,,\n";
        assert_eq!(parse_count(text), Some(11829));
        assert_eq!(
            parse_count("<not counted>,,raw_syscalls:sys_enter,0,100.00,,"),
            Some(0)
        );
        assert_eq!(parse_count("nothing"), None);
    }
}
