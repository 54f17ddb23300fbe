//! portsyncd: the kernel's links → STATE_DB `PORT_TABLE`, with SONiC's
//! start-up handshake on APPL_DB.
//!
//! `rules` (pure SONiC rules) → `table` (what each port owes Redis) ←
//! `follow` (netlink messages and dumps into the table); `startup` runs
//! SONiC's start-up contract; `daemon` is the loop that writes the table.

pub mod check;
pub mod cli;
pub mod daemon;
pub mod follow;
pub mod keys;
pub mod rules;
pub mod run;
pub mod selfcheck;
pub mod session;
pub mod startup;
pub mod table;
pub mod verify;
