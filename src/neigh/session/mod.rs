//! neighsyncd's Redis conversations, one session each (the loop only
//! dispatches to them):
//!
//! - [`appl`]: APPL_DB `NEIGH_TABLE` through the ProducerStateTable, the
//!   hot path, and warm restart's reconciliation;
//! - [`config`]: CONFIG_DB reads: dual-ToR, the link-local mode, the log
//!   level;
//! - [`events`]: keyspace notifications of those CONFIG_DB keys.

use crate::engine::sonic::logger::LoggerFollow;
use crate::neigh::follow::NeighSync;
use crate::neigh::selfcheck::SelfCheck;

pub mod appl;
pub mod config;
pub mod events;

/// What the sessions share: the kernel follower with the neighbor table,
/// and what one session asks of another.
pub struct NeighWork {
    pub sync: NeighSync,
    /// CONFIG_DB may have changed: read it again.
    pub config_wanted: bool,
    /// CONFIG_DB `LOGGER|neighsyncd` against the run's own log settings.
    pub logger: LoggerFollow,
    /// Self-verification: its read-back replies come through the APPL_DB
    /// session.
    pub selfcheck: SelfCheck,
}
