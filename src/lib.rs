//! SONiC's netlink → Redis sync daemons on one engine.
//!
//! [`engine`] is what every daemon shares (reactor, netlink, Redis, SONiC
//! plumbing, metrics, runtime); each syncer lives in its own module and
//! supplies only its rules, its table and its Redis sessions: [`port`] is
//! portsyncd, [`neigh`] neighsyncd. The binaries are in `src/bin/`.

pub mod engine;
pub mod neigh;
pub mod port;
