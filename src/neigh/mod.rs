//! neighsyncd (in progress, issue 13): the kernel's neighbor table →
//! APPL_DB `NEIGH_TABLE`. The address text SONiC writes ([`text`]), the
//! per-message rules ([`rules`]), the interface names ([`links`]) and what
//! is owed to Redis ([`table`]).

pub mod links;
pub mod rules;
pub mod table;
pub mod text;
