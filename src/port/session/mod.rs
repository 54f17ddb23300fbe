//! portsyncd's Redis conversations, one session each (the loop only
//! dispatches to them):
//!
//! - [`state`]: STATE_DB `PORT_TABLE|<name>` writes, the hot path;
//! - [`appl`]: APPL_DB `PORT_TABLE` membership queries, `PortInitDone`
//!   through the ProducerStateTable, and CONFIG_DB's log level;
//! - [`events`]: keyspace notifications of APPL_DB `PORT_TABLE` and
//!   CONFIG_DB `LOGGER|portsyncd`.

use crate::port::follow::LinkSync;
use crate::port::selfcheck::SelfCheck;

pub mod appl;
pub mod events;
pub mod state;

/// What the sessions share: the kernel follower with the port table, and
/// the one request one session makes of another.
pub struct PortWork {
    pub sync: LinkSync,
    /// CONFIG_DB's `LOGGER` entry may have changed: read it again.
    pub logger_wanted: bool,
    /// Self-verification: its read-back replies come through the sessions.
    pub selfcheck: SelfCheck,
}

#[cfg(test)]
mod tests;
