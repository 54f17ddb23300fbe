//! Parsing real kernel captures (`tests/fixtures/netlink`, annotated there)
//! and malformed variants of them.

use super::*;
use crate::engine::netlink::fixture;

const CREATE: &[u8] = fixture!("create_2");
const ADMIN_UP: &[u8] = fixture!("admin_up_1");
const OPER_UP: &[u8] = fixture!("admin_up_2");
const MTU_9100: &[u8] = fixture!("mtu_1");
const ADMIN_DOWN: &[u8] = fixture!("admin_down_1");
const ENSLAVE: &[u8] = fixture!("enslave_1");
const DEL_ENSLAVED: &[u8] = fixture!("del_enslaved_3");
const DUMP: &[u8] = fixture!("dump_1");
const DUMP_DONE: &[u8] = fixture!("dump_2");
const DEL: &[u8] = fixture!("del_1");

/// The one link message of a multicast datagram.
fn single_link(datagram: &[u8]) -> LinkMessage<'_> {
    let mut it = messages(datagram);
    let (hdr, payload) = it.next().unwrap().unwrap();
    assert!(it.next().is_none(), "one message per multicast datagram");
    match parse_event(&hdr, payload).unwrap() {
        Event::Link(l) => l,
        other => panic!("not a link message: {other:?}"),
    }
}

#[test]
fn new_veth_is_down_with_its_name_mtu_and_kind() {
    let l = single_link(CREATE);
    assert_eq!(l.change, LinkChange::New);
    assert_eq!(l.name, b"Ethernet0");
    assert_eq!(l.ifindex, 3);
    assert!(!l.admin_up());
    assert!(!l.oper_up());
    assert_eq!(l.mtu, Some(1500));
    assert_eq!(l.kind, Some(&b"veth"[..]));
    assert_eq!(l.master, None);
    assert_eq!(l.operstate, Some(2)); // IF_OPER_DOWN
}

#[test]
fn admin_up_comes_before_oper_up() {
    let first = single_link(ADMIN_UP);
    assert!(first.admin_up() && !first.oper_up());
    let second = single_link(OPER_UP);
    assert!(second.admin_up() && second.oper_up());
    assert_eq!(second.operstate, Some(6)); // IF_OPER_UP
}

#[test]
fn mtu_change_and_admin_down() {
    assert_eq!(single_link(MTU_9100).mtu, Some(9100));
    let down = single_link(ADMIN_DOWN);
    assert!(!down.admin_up() && !down.oper_up());
    assert_eq!(down.mtu, Some(9100));
}

#[test]
fn enslaved_port_carries_its_master() {
    let l = single_link(ENSLAVE);
    assert_eq!(l.name, b"Ethernet0");
    assert_eq!(l.master, Some(4));
    let del = single_link(DEL_ENSLAVED);
    assert_eq!(del.change, LinkChange::Del);
    assert_eq!(del.master, Some(4));
    assert_eq!(del.name, b"Ethernet0");
}

#[test]
fn plain_dellink() {
    let l = single_link(DEL);
    assert_eq!(l.change, LinkChange::Del);
    assert_eq!(l.name, b"Ethernet4");
    assert_eq!(l.master, None);
}

#[test]
fn dump_datagram_packs_several_messages() {
    let mut names = Vec::new();
    for m in messages(DUMP) {
        let (hdr, payload) = m.unwrap();
        assert_eq!(hdr.seq, 77);
        assert_eq!(hdr.flags & NLM_F_MULTI, NLM_F_MULTI);
        match parse_event(&hdr, payload).unwrap() {
            Event::Link(l) => names.push(String::from_utf8(l.name.to_vec()).unwrap()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(names, ["lo", "Bridge", "peer4", "Ethernet4"]);
    let (hdr, payload) = messages(DUMP_DONE).next().unwrap().unwrap();
    assert_eq!(hdr.seq, 77);
    assert_eq!(parse_event(&hdr, payload).unwrap(), Event::Done);
}

#[test]
fn every_truncation_of_a_real_datagram_is_an_error_or_a_prefix_never_a_panic() {
    for fixture in [CREATE, OPER_UP, ENSLAVE, DUMP, DEL_ENSLAVED] {
        for cut in 0..fixture.len() {
            for (hdr, payload) in messages(&fixture[..cut]).flatten() {
                let _ = parse_event(&hdr, payload);
            }
        }
    }
}

#[test]
fn header_errors() {
    let mut it = messages(&OPER_UP[..10]);
    assert_eq!(
        it.next(),
        Some(Err(ParseError::ShortHeader { remaining: 10 }))
    );
    assert_eq!(it.next(), None);

    // nlmsg_len larger than the datagram.
    let mut big = OPER_UP.to_vec();
    big[0..4].copy_from_slice(&5000u32.to_ne_bytes());
    assert_eq!(
        messages(&big).next(),
        Some(Err(ParseError::BadMessageLength {
            nlmsg_len: 5000,
            remaining: 1500
        }))
    );
    // nlmsg_len smaller than a header.
    big[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert!(matches!(
        messages(&big).next(),
        Some(Err(ParseError::BadMessageLength { .. }))
    ));
}

/// Offset of the first attribute of `ty` in a single-message datagram.
fn attr_offset(datagram: &[u8], ty: u16) -> usize {
    let mut at = NLMSG_HDRLEN + IFINFOMSG_LEN;
    loop {
        let len = u16::from_ne_bytes([datagram[at], datagram[at + 1]]) as usize;
        let t = u16::from_ne_bytes([datagram[at + 2], datagram[at + 3]]) & NLA_TYPE_MASK;
        if t == ty {
            return at;
        }
        at += align4(len);
    }
}

#[test]
fn attribute_errors_are_reported_not_panicked() {
    let payload = |d: &[u8]| d[NLMSG_HDRLEN..].to_vec();

    // rta_len running past the message.
    let mut d = OPER_UP.to_vec();
    let at = attr_offset(&d, IFLA_MTU);
    d[at..at + 2].copy_from_slice(&u16::MAX.to_ne_bytes());
    assert!(matches!(
        parse_link(LinkChange::New, &payload(&d)),
        Err(ParseError::BadAttributeLength {
            rta_type: IFLA_MTU,
            ..
        })
    ));

    // rta_len below the attribute header.
    let mut d = OPER_UP.to_vec();
    d[at..at + 2].copy_from_slice(&2u16.to_ne_bytes());
    assert!(matches!(
        parse_link(LinkChange::New, &payload(&d)),
        Err(ParseError::BadAttributeLength { .. })
    ));

    // An MTU of the wrong size: shrink the attribute to 6 bytes (still
    // 4-aligned to 8, so the walk continues in step).
    let mut d = OPER_UP.to_vec();
    d[at..at + 2].copy_from_slice(&6u16.to_ne_bytes());
    assert_eq!(
        parse_link(LinkChange::New, &payload(&d)),
        Err(ParseError::BadAttributeValue {
            rta_type: IFLA_MTU,
            len: 2
        })
    );

    // No IFLA_IFNAME: rename the attribute type.
    let mut d = OPER_UP.to_vec();
    let at = attr_offset(&d, IFLA_IFNAME);
    d[at + 2..at + 4].copy_from_slice(&999u16.to_ne_bytes());
    assert_eq!(
        parse_link(LinkChange::New, &payload(&d)),
        Err(ParseError::MissingName { ifindex: 3 })
    );

    // Too short for an ifinfomsg.
    assert_eq!(
        parse_link(LinkChange::New, &payload(OPER_UP)[..15]),
        Err(ParseError::ShortIfinfomsg { payload: 15 })
    );
}

#[test]
fn a_bad_message_in_a_dump_does_not_hide_the_others() {
    // Corrupt the attributes of the second message (Bridge): the walk
    // still reaches peer4 and Ethernet4 because nlmsg_len is intact.
    let mut d = DUMP.to_vec();
    let (first, _) = messages(DUMP).next().unwrap().unwrap();
    let second = align4(first.len as usize);
    let attr = second + NLMSG_HDRLEN + IFINFOMSG_LEN;
    d[attr..attr + 2].copy_from_slice(&1u16.to_ne_bytes());
    let results: Vec<_> = messages(&d)
        .map(|m| {
            let (h, p) = m.unwrap();
            parse_event(&h, p).map(|e| match e {
                Event::Link(l) => String::from_utf8(l.name.to_vec()).unwrap(),
                _ => String::new(),
            })
        })
        .collect();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_deref(), Ok("lo"));
    assert!(results[1].is_err());
    assert_eq!(results[2].as_deref(), Ok("peer4"));
    assert_eq!(results[3].as_deref(), Ok("Ethernet4"));
}

#[test]
fn error_and_ack_messages() {
    // NLMSG_ERROR with errno -ENODEV (19), then an ack (0).
    let mut d = vec![0u8; 36];
    d[0..4].copy_from_slice(&36u32.to_ne_bytes());
    d[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
    d[16..20].copy_from_slice(&(-19i32).to_ne_bytes());
    let (h, p) = messages(&d).next().unwrap().unwrap();
    assert_eq!(parse_event(&h, p), Ok(Event::Ack { errno: 19 }));
    d[16..20].copy_from_slice(&0i32.to_ne_bytes());
    let (h, p) = messages(&d).next().unwrap().unwrap();
    assert_eq!(parse_event(&h, p), Ok(Event::Ack { errno: 0 }));
    let (h, _) = messages(&d).next().unwrap().unwrap();
    assert_eq!(
        parse_event(&h, &[1, 2]),
        Err(ParseError::ShortError { payload: 2 })
    );
}
