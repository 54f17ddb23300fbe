//! What every syncer shares: the reactor, netlink (socket, ring, in-place
//! parse, requests, dumps), Redis (encoding, connections, replies), SONiC's
//! plumbing (database map, ProducerStateTable), metrics and the runtime
//! (configuration, logging, signals, placement, sd_notify).
//!
//! Nothing here knows about ports or neighbors: a syncer (`crate::port`)
//! brings its rules, its table and its Redis sessions.

pub mod event_loop;
pub mod metrics;
pub mod netlink;
pub mod probes;
pub mod reactor;
pub mod redis;
pub mod runtime;
pub mod sonic;
pub mod startup;
pub mod sys;
