//! SONiC's Redis plumbing that every syncer shares: where the databases
//! live (`database_config.json`) and the ProducerStateTable protocol.

pub mod dbconfig;
pub mod logger;
pub mod pst;
pub mod warm;
