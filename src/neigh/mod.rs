//! neighsyncd (in progress, issue 13): the kernel's neighbor table →
//! APPL_DB `NEIGH_TABLE`. The address text SONiC writes ([`text`]), the
//! per-message rules ([`rules`]) and what they read from CONFIG_DB
//! ([`context`]), the interface names ([`links`]), what is owed to Redis
//! ([`table`]) and the kernel follower that feeds it ([`follow`]).

pub mod context;
pub mod follow;
pub mod links;
pub mod rules;
pub mod table;
pub mod text;
