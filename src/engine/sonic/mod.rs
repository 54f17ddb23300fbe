//! SONiC's Redis plumbing that every syncer shares: where the databases
//! live (`database_config.json`, and per namespace `database_global.json`)
//! and the ProducerStateTable protocol.

pub mod dbconfig;
pub mod dbglobal;
pub mod logger;
pub mod pst;
pub mod warm;
