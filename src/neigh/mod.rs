//! neighsyncd (in progress, issue 13): the kernel's neighbor table →
//! APPL_DB `NEIGH_TABLE`. So far its pure parts: the address text SONiC
//! writes ([`text`]) and the per-message rules ([`rules`]).

pub mod rules;
pub mod text;
