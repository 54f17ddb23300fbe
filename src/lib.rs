//! portsyncd: keeps SONiC's Redis (STATE_DB `PORT_TABLE`, APPL_DB start-up
//! handshake) in step with the kernel's view of the switch's ports.
//!
//! Data flow, one module per stage: [`netlink`] (socket, ring, in-place
//! parse) → [`sync`] (dispatch, dump recovery) → [`port`] (SONiC's rules,
//! the port table) → [`redis`] (RESP encoding, connections) — driven by the
//! single-threaded loop in [`daemon`] over a [`reactor`], with [`metrics`]
//! on a second thread. [`startup`] runs SONiC's start-up contract first.

pub mod log;

pub mod cli;
pub mod config;
pub mod daemon;
pub mod dbconfig;
pub mod drain;
pub mod metrics;
pub mod netlink;
pub mod port;
pub mod reactor;
pub mod redis;
pub mod runtime;
pub mod startup;
pub mod sync;
pub mod sys;
pub mod sysctl_check;
pub mod testbed;
