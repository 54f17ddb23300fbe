//! Process plumbing: signals, systemd notification, CPU and memory placement.

pub mod notify;
pub mod placement;
pub mod signals;
