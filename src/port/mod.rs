//! Ports: SONiC's rules and the table of what each port owes Redis.

pub mod rules;
pub mod table;
