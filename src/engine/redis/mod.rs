//! Redis: RESP encoding and decoding, the loop's non-blocking connections,
//! a blocking client for start-up and tools, and SONiC's ProducerStateTable.

pub mod client;
pub mod conn;
pub mod encode;
pub mod reply;
pub mod session;
pub mod socket;
