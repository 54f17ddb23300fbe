//! neighsyncd: the kernel's neighbor table → APPL_DB `NEIGH_TABLE`, as
//! SONiC's C++ daemon writes it (`shared/sonic/NEIGH_CONTRACT.md`).
//!
//! Pure parts: the address text SONiC writes ([`text`]), the per-message
//! rules ([`rules`]) and the CONFIG_DB facts they read ([`context`]), the
//! interface names ([`links`]), what is owed to Redis ([`table`]), warm
//! restart's reconciliation ([`warm`]). Around them: the kernel follower
//! ([`follow`]), the Redis sessions ([`session`]), the loop's middle
//! ([`daemon`]), start-up ([`startup`]) and the run ([`run`]).

pub mod check;
pub mod cli;
pub mod context;
pub mod daemon;
pub mod follow;
pub mod keys;
pub mod links;
pub mod rules;
pub mod run;
pub mod selfcheck;
pub mod session;
pub mod startup;
pub mod table;
pub mod text;
pub mod warm;
