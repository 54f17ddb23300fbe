//! Netlink: the sockets, the receive ring, in-place parsing, and requests.

pub mod drain;
pub mod dump;
pub mod neigh;
pub mod parse;
pub mod reader;
pub mod request;
pub mod ring;
pub mod socket;

/// A real kernel capture from `tests/fixtures/netlink` (annotated there).
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/netlink/",
            $name,
            ".bin"
        ))
    };
}
#[cfg(test)]
pub(crate) use fixture;
