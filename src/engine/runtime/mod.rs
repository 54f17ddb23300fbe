//! Process plumbing every daemon shares: layered configuration (TOML <
//! environment < flags), logging (stderr, the journal, syslog), signals, systemd notification, CPU and
//! memory placement, the network namespace (`--namespace`), and the
//! sysctl profile check.

pub mod cli;
pub mod config;
pub mod launch;
pub mod log;
pub mod netns;
pub mod notify;
pub mod placement;
pub mod repeat;
pub mod signals;
pub mod sysctl_check;
pub mod syslog;
