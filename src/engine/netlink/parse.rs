//! In-place parsing of `NETLINK_ROUTE` link messages.
//!
//! Everything here borrows from the receive buffer: `nlmsghdr` → `ifinfomsg`
//! → `rtattr`, every length checked against what is really there. Nothing
//! allocates and nothing panics, whatever the bytes; a malformed message is an
//! [`ParseError`] that the caller counts and skips.

use std::fmt;

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct ifinfomsg)`.
pub const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct rtattr)`.
pub const RTA_HDRLEN: usize = 4;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_DELLINK: u16 = 17;
pub const RTM_GETLINK: u16 = 18;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
/// The dump was interrupted by a change: its content may be inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;

pub const IFLA_IFNAME: u16 = 3;
pub const IFLA_MTU: u16 = 4;
pub const IFLA_MASTER: u16 = 10;
pub const IFLA_OPERSTATE: u16 = 16;
pub const IFLA_LINKINFO: u16 = 18;
pub const IFLA_EXT_MASK: u16 = 29;
pub const IFLA_INFO_KIND: u16 = 1;
/// Nested attributes carry this flag in their type; it is masked off.
const NLA_TYPE_MASK: u16 = !(0x8000 | 0x4000);

pub const IFF_UP: u32 = 0x1;
pub const IFF_RUNNING: u32 = 0x40;

/// Round `len` up to netlink's 4-byte alignment.
#[inline]
pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Why a message could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes remain in the datagram than a `nlmsghdr` needs.
    ShortHeader { remaining: usize },
    /// `nlmsg_len` is smaller than the header or larger than what remains.
    BadMessageLength { nlmsg_len: u32, remaining: usize },
    /// A link message too short for its `ifinfomsg`.
    ShortIfinfomsg { payload: usize },
    /// An attribute whose `rta_len` is below its header or beyond the message.
    BadAttributeLength {
        rta_type: u16,
        rta_len: u16,
        remaining: usize,
    },
    /// An attribute whose payload has the wrong size for its type.
    BadAttributeValue { rta_type: u16, len: usize },
    /// A link message without `IFLA_IFNAME`.
    MissingName { ifindex: i32 },
    /// An `NLMSG_ERROR` too short for its errno.
    ShortError { payload: usize },
    /// A neighbor message too short for its `ndmsg`.
    ShortNdmsg { payload: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::ShortHeader { remaining } => {
                write!(f, "{remaining} bytes left, too short for a nlmsghdr")
            }
            ParseError::BadMessageLength {
                nlmsg_len,
                remaining,
            } => {
                write!(f, "nlmsg_len {nlmsg_len} with {remaining} bytes left")
            }
            ParseError::ShortIfinfomsg { payload } => {
                write!(
                    f,
                    "link message payload of {payload} bytes, too short for ifinfomsg"
                )
            }
            ParseError::BadAttributeLength {
                rta_type,
                rta_len,
                remaining,
            } => write!(
                f,
                "attribute type {rta_type} with rta_len {rta_len} and {remaining} bytes left"
            ),
            ParseError::BadAttributeValue { rta_type, len } => {
                write!(
                    f,
                    "attribute type {rta_type} has a {len}-byte value of the wrong size"
                )
            }
            ParseError::MissingName { ifindex } => {
                write!(f, "link message for ifindex {ifindex} has no IFLA_IFNAME")
            }
            ParseError::ShortError { payload } => {
                write!(
                    f,
                    "NLMSG_ERROR payload of {payload} bytes, too short for an errno"
                )
            }
            ParseError::ShortNdmsg { payload } => {
                write!(
                    f,
                    "neighbor message payload of {payload} bytes, too short for ndmsg"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at + 2)?;
    Some(u16::from_ne_bytes([bytes[0], bytes[1]]))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes = b.get(at..at + 4)?;
    Some(u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The fixed header of one netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlHeader {
    pub len: u32,
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl NlHeader {
    /// Read a header from the start of `b`, if there is room for one.
    pub fn read(b: &[u8]) -> Option<NlHeader> {
        Some(NlHeader {
            len: u32_at(b, 0)?,
            msg_type: u16_at(b, 4)?,
            flags: u16_at(b, 6)?,
            seq: u32_at(b, 8)?,
            pid: u32_at(b, 12)?,
        })
    }
}

/// Walks the messages packed in one datagram.
///
/// Yields each message's header and payload. A header whose length cannot be
/// trusted ends the walk with one error: nothing after it can be located.
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterate over the messages of one received datagram.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages {
        rest: datagram,
        failed: false,
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(NlHeader, &'a [u8]), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let remaining = self.rest.len();
        let Some(header) = NlHeader::read(self.rest) else {
            self.failed = true;
            return Some(Err(ParseError::ShortHeader { remaining }));
        };
        let len = header.len as usize;
        if len < NLMSG_HDRLEN || len > remaining {
            self.failed = true;
            return Some(Err(ParseError::BadMessageLength {
                nlmsg_len: header.len,
                remaining,
            }));
        }
        let payload = &self.rest[NLMSG_HDRLEN..len];
        // The last message of a datagram may omit its alignment padding.
        let advance = align4(len).min(remaining);
        self.rest = &self.rest[advance..];
        Some(Ok((header, payload)))
    }
}

/// Whether a link message announces or removes a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChange {
    New,
    Del,
}

/// One `RTM_NEWLINK` / `RTM_DELLINK`, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkMessage<'a> {
    pub change: LinkChange,
    pub ifindex: i32,
    /// `ifi_flags`: `IFF_UP`, `IFF_RUNNING`, …
    pub flags: u32,
    /// `IFLA_IFNAME` without its trailing NUL.
    pub name: &'a [u8],
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    /// `IFLA_LINKINFO` / `IFLA_INFO_KIND` without its trailing NUL.
    pub kind: Option<&'a [u8]>,
    pub operstate: Option<u8>,
}

impl LinkMessage<'_> {
    /// Administratively up (`IFF_UP`).
    pub fn admin_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Operationally up the way SONiC reads it (`IFF_RUNNING`).
    pub fn oper_up(&self) -> bool {
        self.flags & IFF_RUNNING != 0
    }
}

/// Walks the `rtattr`s of one attribute block.
pub(crate) struct Attributes<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(u16, &'a [u8]), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < RTA_HDRLEN {
            // Trailing bytes shorter than a header are padding.
            return None;
        }
        let remaining = self.rest.len();
        let rta_len = u16_at(self.rest, 0)?;
        let rta_type = u16_at(self.rest, 2)? & NLA_TYPE_MASK;
        let len = rta_len as usize;
        if len < RTA_HDRLEN || len > remaining {
            self.rest = &[];
            return Some(Err(ParseError::BadAttributeLength {
                rta_type,
                rta_len,
                remaining,
            }));
        }
        let value = &self.rest[RTA_HDRLEN..len];
        self.rest = &self.rest[align4(len).min(remaining)..];
        Some(Ok((rta_type, value)))
    }
}

fn strip_nul(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(end) => &s[..end],
        None => s,
    }
}

fn attr_u32(rta_type: u16, value: &[u8]) -> Result<u32, ParseError> {
    if value.len() != 4 {
        return Err(ParseError::BadAttributeValue {
            rta_type,
            len: value.len(),
        });
    }
    Ok(u32::from_ne_bytes([value[0], value[1], value[2], value[3]]))
}

/// Parse the payload of a message of type `RTM_NEWLINK` or `RTM_DELLINK`.
pub fn parse_link(change: LinkChange, payload: &[u8]) -> Result<LinkMessage<'_>, ParseError> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(ParseError::ShortIfinfomsg {
            payload: payload.len(),
        });
    }
    let ifindex = u32_at(payload, 4).map(|v| v as i32).unwrap_or(0);
    let flags = u32_at(payload, 8).unwrap_or(0);
    let mut msg = LinkMessage {
        change,
        ifindex,
        flags,
        name: &[],
        mtu: None,
        master: None,
        kind: None,
        operstate: None,
    };
    let mut have_name = false;
    for attr in (Attributes {
        rest: &payload[IFINFOMSG_LEN..],
    }) {
        let (rta_type, value) = attr?;
        match rta_type {
            IFLA_IFNAME => {
                msg.name = strip_nul(value);
                have_name = !msg.name.is_empty();
            }
            IFLA_MTU => msg.mtu = Some(attr_u32(rta_type, value)?),
            IFLA_MASTER => msg.master = Some(attr_u32(rta_type, value)?),
            IFLA_OPERSTATE => match value.first() {
                Some(&state) => msg.operstate = Some(state),
                None => return Err(ParseError::BadAttributeValue { rta_type, len: 0 }),
            },
            IFLA_LINKINFO => {
                for nested in (Attributes { rest: value }) {
                    let (nested_type, nested_value) = nested?;
                    if nested_type == IFLA_INFO_KIND {
                        msg.kind = Some(strip_nul(nested_value));
                    }
                }
            }
            _ => {}
        }
    }
    if !have_name {
        return Err(ParseError::MissingName { ifindex });
    }
    Ok(msg)
}

/// What one netlink message means to portsyncd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A link appeared, changed or went away.
    Link(LinkMessage<'a>),
    /// The end of a dump (`NLMSG_DONE`).
    Done,
    /// An `NLMSG_ERROR`: an ack (`errno == 0`) or a refused request.
    Ack { errno: i32 },
    /// Anything else (`NLMSG_NOOP`, other route families).
    Ignored,
}

/// The errno of an `NLMSG_ERROR` payload (0 for an ack), or `None` when
/// the payload is too short to hold one.
pub fn error_errno(payload: &[u8]) -> Option<i32> {
    // The kernel sends the negative errno. Wrapping: `i32::MIN` (never sent
    // by a kernel) must not panic in a debug build.
    u32_at(payload, 0).map(|raw| (raw as i32).wrapping_neg())
}

/// Parse one message given its header and payload (from [`messages`]).
pub fn parse_event<'a>(header: &NlHeader, payload: &'a [u8]) -> Result<Event<'a>, ParseError> {
    match header.msg_type {
        RTM_NEWLINK => parse_link(LinkChange::New, payload).map(Event::Link),
        RTM_DELLINK => parse_link(LinkChange::Del, payload).map(Event::Link),
        NLMSG_DONE => Ok(Event::Done),
        NLMSG_ERROR => match error_errno(payload) {
            Some(errno) => Ok(Event::Ack { errno }),
            None => Err(ParseError::ShortError {
                payload: payload.len(),
            }),
        },
        _ => Ok(Event::Ignored),
    }
}

#[cfg(test)]
mod tests;
