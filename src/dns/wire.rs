//! The DNS wire format, pure: queries written, replies decoded with a bounds
//! check on every read, names read through their compression pointers, and the
//! steps that pick records out of a decoded reply. No sockets, no clock: bytes
//! in, values out, so all of it is tested and fuzzed with byte slices.
//!
//! Replies are decoded here rather than by `dns-protocol`'s reader, which
//! indexes past the end of short labels, loops forever on a pointer loop and
//! rejects a whole reply for one record type it does not know. Queries are
//! still written with `dns-protocol`.

use std::fmt;
use std::net::IpAddr;

use dns_protocol::{Flags, Message, Question as QuestionOut, ResourceType};

pub(super) const TYPE_A: u16 = 1;
pub(super) const TYPE_CNAME: u16 = 5;
pub(super) const TYPE_PTR: u16 = 12;
pub(super) const TYPE_MX: u16 = 15;
pub(super) const TYPE_TXT: u16 = 16;
pub(super) const TYPE_AAAA: u16 = 28;
pub(super) const CLASS_IN: u16 = 1;

/// The response code for success.
pub const RCODE_NOERROR: u8 = 0;
/// The response code of a server that could not answer.
pub const RCODE_SERVFAIL: u8 = 2;
/// The response code for a name that does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// The response code of a server that will not answer us.
pub const RCODE_REFUSED: u8 = 5;

/// Compression pointers followed while reading one name; real names need a few.
const MAX_POINTER_JUMPS: usize = 32;
/// CNAME links followed within one reply, and queries made to follow them.
pub(super) const MAX_CNAME_HOPS: usize = 8;

/// The record types the resolver asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RrType {
    /// An IPv4 address.
    A,
    /// An IPv6 address.
    Aaaa,
    /// A mail exchange.
    Mx,
    /// Text: SPF policies, DKIM keys, DMARC records.
    Txt,
    /// A reverse name, under in-addr.arpa or ip6.arpa.
    Ptr,
}

impl RrType {
    /// The type's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            RrType::A => TYPE_A,
            RrType::Aaaa => TYPE_AAAA,
            RrType::Mx => TYPE_MX,
            RrType::Txt => TYPE_TXT,
            RrType::Ptr => TYPE_PTR,
        }
    }
}

impl fmt::Display for RrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RrType::A => "A",
            RrType::Aaaa => "AAAA",
            RrType::Mx => "MX",
            RrType::Txt => "TXT",
            RrType::Ptr => "PTR",
        })
    }
}

/// Why reply bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The data ends before the structure does.
    Truncated,
    /// A label length byte with the reserved top bits 01 or 10.
    BadLabel,
    /// More compression pointers in one name than any real name needs.
    PointerLoop,
    /// A name longer than 255 octets.
    NameTooLong,
    /// RDATA of the wrong length for its type.
    BadRdata,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "it ends too early",
            WireError::BadLabel => "a name has a reserved label type",
            WireError::PointerLoop => "a name's compression pointers loop",
            WireError::NameTooLong => "a name is longer than 255 octets",
            WireError::BadRdata => "a record's data does not fit its type",
        })
    }
}

impl std::error::Error for WireError {}

/// A decoded reply: the header fields the resolver uses, the question and the
/// records of the answer and additional sections. Names are as `read_name`
/// gives them: lowercase, without the final dot, odd octets written `\DDD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The query id echoed.
    pub id: u16,
    /// QR: set in a response.
    pub response: bool,
    /// The opcode; 0 is a standard query.
    pub opcode: u16,
    /// TC: the answer did not fit, ask again over TCP.
    pub truncated: bool,
    /// The response code (`RCODE_*`).
    pub rcode: u8,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The additional section (glue addresses for MX hosts).
    pub additional: Vec<Record>,
}

/// One entry of the question section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: String,
    /// The record type's number.
    pub rr_type: u16,
    /// The class's number; 1 is IN.
    pub class: u16,
}

/// One resource record; the owner name is lowercase, without a dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: String,
    /// The data, decoded for the types of class IN the resolver uses.
    pub data: RData,
}

/// Record data, decoded for the types the resolver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RData {
    /// A or AAAA.
    Addr(IpAddr),
    /// The canonical name an alias stands for.
    Cname(String),
    /// A mail exchange; an empty exchange is the root, ".", of a null MX.
    Mx {
        /// Lower is tried first.
        preference: u16,
        /// The host's name.
        exchange: String,
    },
    /// The name a reverse name points to.
    Ptr(String),
    /// A TXT record's character-strings joined without separators, as RFC
    /// 7208 3.3 asks for SPF (and DKIM and DMARC read them the same way).
    /// Octets, not text: nothing says they are UTF-8.
    Txt(Vec<u8>),
    /// Any other type or class.
    Other,
}

impl RData {
    /// The type of the data, for the types the resolver asks for.
    pub fn rr_type(&self) -> Option<RrType> {
        match self {
            RData::Addr(IpAddr::V4(_)) => Some(RrType::A),
            RData::Addr(IpAddr::V6(_)) => Some(RrType::Aaaa),
            RData::Mx { .. } => Some(RrType::Mx),
            RData::Txt(_) => Some(RrType::Txt),
            RData::Ptr(_) => Some(RrType::Ptr),
            RData::Cname(_) | RData::Other => None,
        }
    }
}

impl Reply {
    /// Decodes a whole reply. A truncated reply (TC) yields its header only: the
    /// caller asks again over TCP. Authority records are read and skipped; bytes
    /// after the last record are ignored.
    ///
    /// # Errors
    /// When a count, name or record runs past the end, a name is malformed or
    /// loops, or a record's data does not fit its type.
    pub fn parse(msg: &[u8]) -> Result<Reply, WireError> {
        let flags = be16(msg, 2)?;
        let count = |i: usize| be16(msg, 4 + 2 * i);
        let (qdcount, ancount, nscount, arcount) = (count(0)?, count(1)?, count(2)?, count(3)?);
        let mut reply = Reply {
            id: be16(msg, 0)?,
            response: flags & 0x8000 != 0,
            opcode: (flags >> 11) & 0xf,
            truncated: flags & 0x0200 != 0,
            rcode: (flags & 0xf) as u8,
            questions: Vec::new(),
            answers: Vec::new(),
            additional: Vec::new(),
        };
        if reply.truncated {
            return Ok(reply);
        }
        let mut pos = 12;
        for _ in 0..qdcount {
            let (name, next) = read_name(msg, pos)?;
            reply.questions.push(Question { name, rr_type: be16(msg, next)?, class: be16(msg, next + 2)? });
            pos = next + 4;
        }
        for section in [ancount, nscount, arcount].into_iter().enumerate() {
            for _ in 0..section.1 {
                let (record, next) = read_record(msg, pos)?;
                pos = next;
                match section.0 {
                    0 => reply.answers.push(record),
                    2 => reply.additional.push(record),
                    _ => {}
                }
            }
        }
        Ok(reply)
    }

    /// Whether this reply answers the query `id` for `ty` records of `name`:
    /// our id, a standard response, our question. A failure without the
    /// question (some servers send REFUSED that way) also counts.
    pub fn is_answer_to(&self, id: u16, name: &str, ty: RrType) -> bool {
        let question = match self.questions.as_slice() {
            [q] => q.name == name && q.rr_type == ty.code() && q.class == CLASS_IN,
            [] => self.truncated || !matches!(self.rcode, RCODE_NOERROR | RCODE_NXDOMAIN),
            _ => false,
        };
        self.id == id && self.response && self.opcode == 0 && question
    }
}

/// Follows the CNAME records in `answers` from `name` to the name the chain
/// ends at; `None` when it is longer than `MAX_CNAME_HOPS` links or loops.
pub fn canonical_name(answers: &[Record], name: &str) -> Option<String> {
    let mut current = name.to_string();
    for _ in 0..=MAX_CNAME_HOPS {
        let target = answers.iter().find_map(|r| match &r.data {
            RData::Cname(target) if r.name == current => Some(target),
            _ => None,
        });
        match target {
            Some(target) => current.clone_from(target),
            None => return Some(current),
        }
    }
    None
}

/// The addresses of family `ty` that `records` give for `owner`.
pub fn addresses(records: &[Record], owner: &str, ty: RrType) -> Vec<IpAddr> {
    records
        .iter()
        .filter(|r| r.name == owner && r.data.rr_type() == Some(ty))
        .filter_map(|r| match r.data {
            RData::Addr(ip) => Some(ip),
            _ => None,
        })
        .collect()
}

/// The reverse name a PTR query for `ip` asks about (RFC 1035 3.5, RFC 3596
/// 2.5): `1.2.0.192.in-addr.arpa`, or 32 nibbles under `ip6.arpa`. An
/// IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) gets its IPv4 address's name.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(ip) => {
            let mut name: String =
                ip.octets().iter().rev().flat_map(|b| [b & 0xf, b >> 4]).map(|n| format!("{n:x}.")).collect();
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// Writes a recursive query for `name`, which `domain_name::check` has passed
/// as a lookup name.
pub(super) fn encode_query(id: u16, name: &str, ty: RrType) -> Result<Vec<u8>, String> {
    let rtype = match ty {
        RrType::A => ResourceType::A,
        RrType::Aaaa => ResourceType::AAAA,
        RrType::Mx => ResourceType::MX,
        RrType::Txt => ResourceType::Txt,
        RrType::Ptr => ResourceType::Ptr,
    };
    let mut questions = [QuestionOut::new(name, rtype, CLASS_IN)];
    let message = Message::new(id, Flags::standard_query(), &mut questions, &mut [], &mut [], &mut []);
    let mut buf = vec![0; message.space_needed()];
    let len = message.write(&mut buf).map_err(|e| format!("cannot encode a query for {name}: {e}"))?;
    buf.truncate(len);
    Ok(buf)
}

/// The 16-bit big-endian number at `pos`.
pub(super) fn be16(msg: &[u8], pos: usize) -> Result<u16, WireError> {
    match msg.get(pos..pos.saturating_add(2)) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(WireError::Truncated),
    }
}

/// Decodes the resource record at `pos`; returns it and the offset after it.
fn read_record(msg: &[u8], pos: usize) -> Result<(Record, usize), WireError> {
    let (name, next) = read_name(msg, pos)?;
    let (ty, class) = (be16(msg, next)?, be16(msg, next + 2)?);
    let start = next + 10;
    let end = start + usize::from(be16(msg, next + 8)?);
    let rdata = msg.get(start..end).ok_or(WireError::Truncated)?;
    let data = match (class, ty) {
        (CLASS_IN, TYPE_A | TYPE_AAAA) => RData::Addr(addr_rdata(ty, rdata)?),
        (CLASS_IN, TYPE_MX) => {
            let (preference, exchange) = mx_rdata(msg, start, end)?;
            RData::Mx { preference, exchange }
        }
        (CLASS_IN, TYPE_CNAME) => RData::Cname(name_rdata(msg, start, end)?),
        (CLASS_IN, TYPE_PTR) => RData::Ptr(name_rdata(msg, start, end)?),
        (CLASS_IN, TYPE_TXT) => RData::Txt(txt_rdata(rdata)?),
        _ => RData::Other,
    };
    Ok((Record { name, data }, end))
}

/// A/AAAA RDATA: exactly 4 or 16 octets.
fn addr_rdata(ty: u16, rdata: &[u8]) -> Result<IpAddr, WireError> {
    match ty {
        TYPE_A => <[u8; 4]>::try_from(rdata).map(IpAddr::from).map_err(|_| WireError::BadRdata),
        TYPE_AAAA => <[u8; 16]>::try_from(rdata).map(IpAddr::from).map_err(|_| WireError::BadRdata),
        _ => Err(WireError::BadRdata),
    }
}

/// MX RDATA in `msg[start..end]`: preference, then the exchange, whose compression
/// pointers may lead anywhere in the message. Both must fill the RDATA exactly.
fn mx_rdata(msg: &[u8], start: usize, end: usize) -> Result<(u16, String), WireError> {
    if end < start + 2 {
        return Err(WireError::BadRdata);
    }
    Ok((be16(msg, start)?, name_rdata(msg, start + 2, end)?))
}

/// RDATA that is one name (CNAME, PTR), which must end exactly at `end`.
fn name_rdata(msg: &[u8], start: usize, end: usize) -> Result<String, WireError> {
    match read_name(msg, start)? {
        (name, after) if after == end => Ok(name),
        _ => Err(WireError::BadRdata),
    }
}

/// TXT RDATA: character-strings, each a length octet and that many octets,
/// filling the RDATA exactly; returned joined. Empty RDATA, which RFC 1035
/// does not foresee but servers send, is an empty text.
fn txt_rdata(rdata: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut text = Vec::with_capacity(rdata.len());
    let mut rest = rdata;
    while let Some((&len, tail)) = rest.split_first() {
        let string = tail.get(..usize::from(len)).ok_or(WireError::BadRdata)?;
        text.extend_from_slice(string);
        rest = &tail[string.len()..];
    }
    Ok(text)
}

/// Reads the possibly compressed name at `pos`. Returns it lowercase and without the
/// final dot ("" for the root), and the offset just after it where it was found.
/// Octets other than letters, digits, `-` and `_` are written `\DDD`, so a strange
/// label can never pass for a host name.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), WireError> {
    let mut name = String::new();
    let mut wire_len = 1;
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len >> 6 {
            0 if len == 0 => return Ok((name, after.unwrap_or(pos + 1))),
            0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len)).ok_or(WireError::Truncated)?;
                wire_len += 1 + label.len();
                if wire_len > 255 {
                    return Err(WireError::NameTooLong);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                        name.push(char::from(b.to_ascii_lowercase()));
                    } else {
                        name.push('\\');
                        name.extend([b / 100, b / 10 % 10, b % 10].map(|d| char::from(b'0' + d)));
                    }
                }
                pos += 1 + label.len();
            }
            3 => {
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(WireError::PointerLoop);
                }
                let target = be16(msg, pos)? & 0x3fff;
                after.get_or_insert(pos + 2);
                pos = usize::from(target);
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WireError::*;
    use super::*;
    use crate::dns::fake::{Data, Rr, build, respond};

    #[test]
    fn read_name_follows_pointers_and_rejects_bad_names() {
        let long: Vec<u8> = (0..5).flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat()).chain([0]).collect();
        type Case<'a> = (&'a [u8], usize, Result<(&'a str, usize), WireError>);
        let cases: &[Case<'_>] = &[
            (b"\x03www\x07Example\x03COM\x00", 0, Ok(("www.example.com", 17))),
            (b"\x00", 0, Ok(("", 1))),
            (b"\x07example\x03com\x00\x03www\xc0\x00", 13, Ok(("www.example.com", 19))),
            (b"\x03com\x00\x07example\xc0\x00\x04mail\xc0\x05", 15, Ok(("mail.example.com", 22))),
            (b"\x03a.b\x00", 0, Ok(("a\\046b", 5))),
            (b"", 0, Err(Truncated)),
            (b"\x05ab", 0, Err(Truncated)),
            (b"\x03www", 0, Err(Truncated)),
            (b"\x03www\xc0", 0, Err(Truncated)),
            (b"\xc0\x10", 0, Err(Truncated)),
            (b"\xc0\x00", 0, Err(PointerLoop)),
            (b"\xc0\x02\xc0\x00", 0, Err(PointerLoop)),
            (b"\x03www\xc0\x00", 0, Err(PointerLoop)),
            (b"\x41abc\x00", 0, Err(BadLabel)),
            (b"\x81abc\x00", 0, Err(BadLabel)),
            (&long, 0, Err(NameTooLong)),
        ];
        for (i, (msg, pos, want)) in cases.iter().enumerate() {
            let got = read_name(msg, *pos);
            assert_eq!(got, want.map(|(name, after)| (name.to_string(), after)), "case {i}");
        }
    }

    #[test]
    fn mx_rdata_reads_preference_and_exchange() {
        type Case<'a> = (&'a [u8], usize, usize, Result<(u16, &'a str), WireError>);
        let cases: &[Case<'_>] = &[
            (b"\x00\x0a\x04mail\x07example\x03com\x00", 0, 20, Ok((10, "mail.example.com"))),
            (b"\x00\x00\x00", 0, 3, Ok((0, ""))),
            (b"\x07example\x03com\x00\x00\x14\x02mx\xc0\x00", 13, 20, Ok((20, "mx.example.com"))),
            (b"\x00", 0, 1, Err(BadRdata)),
            (b"\x00\x0a\x00\xff", 0, 4, Err(BadRdata)),
            (b"\x00\x0a\x03abc\x00", 0, 4, Err(BadRdata)),
            (b"\x00\x0a\x03ab", 0, 5, Err(Truncated)),
            (b"\x00\x0a\xc0\x02", 0, 4, Err(PointerLoop)),
        ];
        for (i, (msg, start, end, want)) in cases.iter().enumerate() {
            let got = mx_rdata(msg, *start, *end);
            assert_eq!(got, want.map(|(p, name)| (p, name.to_string())), "case {i}");
        }
    }

    #[test]
    fn addr_rdata_needs_the_exact_length() {
        assert_eq!(addr_rdata(TYPE_A, &[192, 0, 2, 1]), Ok(IpAddr::from([192, 0, 2, 1])));
        let v6 = [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(addr_rdata(TYPE_AAAA, &v6), Ok("2001:db8::1".parse().unwrap()));
        assert_eq!(addr_rdata(TYPE_A, &v6), Err(BadRdata));
        assert_eq!(addr_rdata(TYPE_A, &[1, 2, 3]), Err(BadRdata));
        assert_eq!(addr_rdata(TYPE_AAAA, &[1, 2, 3, 4]), Err(BadRdata));
    }

    #[test]
    fn txt_rdata_joins_its_strings_and_fills_the_rdata() {
        type Case<'a> = (&'a [u8], Result<&'a [u8], WireError>);
        let cases: &[Case<'_>] = &[
            (b"\x05hello", Ok(b"hello")),
            (b"\x07v=spf1 \x04-all", Ok(b"v=spf1 -all")),
            (b"\x02\xff\x00\x00\x01a", Ok(b"\xff\x00a")),
            (b"", Ok(b"")),
            (b"\x00", Ok(b"")),
            (b"\x06hello", Err(BadRdata)),
            (b"\x05hello\x01", Err(BadRdata)),
            (b"\xff", Err(BadRdata)),
        ];
        for (i, (rdata, want)) in cases.iter().enumerate() {
            assert_eq!(txt_rdata(rdata), want.map(<[u8]>::to_vec), "case {i}");
        }
        // The longest string there is, and several of them.
        let mut big = Vec::new();
        for _ in 0..4 {
            big.push(255);
            big.extend([b'x'; 255]);
        }
        assert_eq!(txt_rdata(&big), Ok(vec![b'x'; 1020]));
    }

    #[test]
    fn parse_reads_txt_and_ptr_records() {
        let query = encode_query(9, "example.com", RrType::Txt).unwrap();
        let answers = [
            Rr("example.com".into(), Data::Txt(&[b"v=spf1", b" -all"])),
            Rr("example.com".into(), Data::Txt(&[b"\xc3\x28"])),
            Rr("example.com".into(), Data::Ptr("mail.example.com")),
            Rr("example.com".into(), Data::Ptr("A\\b.example")),
        ];
        let reply = Reply::parse(&build(&query, "example.com", 0, false, &answers, &[])).unwrap();
        let data: Vec<RData> = reply.answers.into_iter().map(|r| r.data).collect();
        assert_eq!(
            data,
            [
                RData::Txt(b"v=spf1 -all".to_vec()),
                RData::Txt(b"\xc3\x28".to_vec()),
                RData::Ptr("mail.example.com".into()),
                RData::Ptr("a\\092b.example".into()),
            ]
        );
        assert_eq!(data[0].rr_type(), Some(RrType::Txt));
        assert_eq!(data[2].rr_type(), Some(RrType::Ptr));
        // A PTR whose name runs past its RDATA, or stops short of it.
        // Its RDATA is 7 octets, "\x04mail" and a pointer; the length's low octet
        // comes just before.
        let mut bad = build(&query, "example.com", 0, false, &answers[2..3], &[]);
        let rdlength = bad.len() - 7 - 1;
        assert_eq!(bad[rdlength], 7);
        bad[rdlength] = 8;
        bad.push(0);
        assert_eq!(Reply::parse(&bad), Err(BadRdata));
        bad[rdlength] = 6;
        assert_eq!(Reply::parse(&bad), Err(BadRdata));
    }

    #[test]
    fn parse_survives_cut_and_corrupted_replies() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = respond(&query, true).remove(0);
        let parsed = Reply::parse(&reply).unwrap();
        assert_eq!(parsed.answers.len(), 3);
        for len in 0..reply.len() {
            assert!(Reply::parse(&reply[..len]).is_err(), "prefix of {len} octets");
        }
        for pos in 0..reply.len() {
            for byte in [0x00, 0x01, 0x3f, 0x40, 0xc0, 0xff] {
                let mut bad = reply.clone();
                bad[pos] = byte;
                let _ = Reply::parse(&bad);
            }
        }
    }

    #[test]
    fn parse_gives_every_name_read() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = respond(&query, true).remove(0);
        let parsed = Reply::parse(&reply).unwrap();
        let mut names: Vec<&str> = parsed.questions.iter().map(|q| q.name.as_str()).collect();
        for record in parsed.answers.iter().chain(&parsed.additional) {
            names.push(&record.name);
            if let RData::Mx { exchange, .. } = &record.data {
                names.push(exchange);
            }
        }
        let want = [
            "example.com",
            "example.com",
            "mx3.example.com",
            "example.com",
            "mx1.example.com",
            "example.com",
            "mx2.example.com",
        ];
        assert_eq!(names, want);
        assert_eq!(
            Reply::parse(&reply[..20]).map_err(|e| e.to_string()),
            Err("it ends too early".to_string())
        );
    }

    #[test]
    fn reply_must_echo_our_id_and_question() {
        let query = encode_query(7, "example.com", RrType::Mx).unwrap();
        let reply = Reply::parse(&respond(&query, true).remove(0)).unwrap();
        assert!(reply.is_answer_to(7, "example.com", RrType::Mx));
        assert!(!reply.is_answer_to(8, "example.com", RrType::Mx));
        assert!(!reply.is_answer_to(7, "example.org", RrType::Mx));
        assert!(!reply.is_answer_to(7, "example.com", RrType::A));
        assert!(!reply.is_answer_to(7, "example.com", RrType::Txt));
        // A query is no answer, nor is another opcode.
        let mut query_back = Reply::parse(&query).unwrap();
        assert!(!query_back.is_answer_to(7, "example.com", RrType::Mx));
        query_back.response = true;
        assert!(query_back.is_answer_to(7, "example.com", RrType::Mx));
        query_back.opcode = 2;
        assert!(!query_back.is_answer_to(7, "example.com", RrType::Mx));
    }

    #[test]
    fn reverse_names_for_ipv4_mapped_and_ipv6_addresses() {
        let cases = [
            ("192.0.2.1", "1.2.0.192.in-addr.arpa"),
            ("::ffff:192.0.2.1", "1.2.0.192.in-addr.arpa"),
            ("2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),
            (
                "2001:db8:abcd:12::fe",
                "e.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa",
            ),
        ];
        for (ip, want) in cases {
            assert_eq!(reverse_name(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn canonical_name_follows_the_chain_and_stops_at_a_loop() {
        let cname = |from: &str, to: &str| Record { name: from.into(), data: RData::Cname(to.into()) };
        let chain = [cname("a.example", "b.example"), cname("b.example", "c.example")];
        assert_eq!(canonical_name(&chain, "a.example").as_deref(), Some("c.example"));
        assert_eq!(canonical_name(&chain, "c.example").as_deref(), Some("c.example"));
        let looping = [cname("a.example", "b.example"), cname("b.example", "a.example")];
        assert_eq!(canonical_name(&looping, "a.example"), None);
    }
}
