//! The queue's records and their codec: what the queue keeps about a message
//! besides its bytes ([`Message`], its [`Recipient`]s and their [`Status`]),
//! and the bytes a record is stored as. Pure: the store keeps the bytes, this
//! module only turns them into records and back, and reads every version an
//! earlier release wrote.
#![forbid(unsafe_code)]

use std::fmt;

use super::store::StoreError;
use crate::envelope::{Address, Domain, Route};

/// A queue id: unique for the life of a data dir, shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u64);

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for QueueId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<QueueId, Self::Err> {
        u64::from_str_radix(s, 16).map(QueueId)
    }
}

/// Where one recipient stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not delivered yet.
    Pending,
    /// Delivered (Maildir file fsync'd, or a remote `250`).
    Delivered,
    /// Given up: a permanent error or the queue lifetime ran out.
    Failed,
}

/// One recipient of a queued message and its delivery state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Where it goes.
    pub route: Route,
    /// Where it stands.
    pub status: Status,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// The last error, empty if none.
    pub last_error: String,
}

/// What the queue keeps about a message besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its queue id.
    pub id: QueueId,
    /// Unix time of acceptance by the wall clock, as people are shown it.
    pub arrived: u64,
    /// Queue-clock time of acceptance (see [`super::clock`]): what its age,
    /// for the lifetime and the delay notice, is counted from.
    pub queued: u64,
    /// The reverse-path, or `None` for `<>`.
    pub sender: Option<Address>,
    /// The size in bytes of the stored message (CRLF line ends).
    pub size: u64,
    /// How many chunks hold the message.
    pub chunks: u32,
    /// Queue-clock time of the next attempt; its key in the `due` table.
    pub next_attempt: u64,
    /// What made it: a client, or Postern reporting on another message.
    pub kind: Kind,
    /// True once the sender was told the message is delayed.
    pub delay_notified: bool,
    /// The recipients.
    pub recipients: Vec<Recipient>,
}

/// Where a queued message came from; decides what happens when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Mail from a client: failures are reported to its sender.
    Normal,
    /// A delivery report Postern wrote: if it fails, postmaster is told once.
    Bounce,
    /// A failed report on its way to postmaster: if it fails, it is dropped.
    DoubleBounce,
}

// The record format: a version byte, then fixed-width big-endian integers and
// length-prefixed UTF-8 strings.

/// Version 2 added `kind` and `delay_notified`, version 3 `queued`; older
/// records are still read. Before version 3 all times were unix times, and
/// the queue clock of such a store starts at the wall clock.
const VERSION: u8 = 3;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes a message record.
pub fn encode(m: &Message) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&m.id.0.to_be_bytes());
    out.extend_from_slice(&m.arrived.to_be_bytes());
    out.extend_from_slice(&m.size.to_be_bytes());
    out.extend_from_slice(&m.chunks.to_be_bytes());
    out.extend_from_slice(&m.next_attempt.to_be_bytes());
    out.push(match m.kind {
        Kind::Normal => 0,
        Kind::Bounce => 1,
        Kind::DoubleBounce => 2,
    });
    out.push(u8::from(m.delay_notified));
    out.extend_from_slice(&m.queued.to_be_bytes());
    // Addresses are kept as their parts, never re-parsed from printed text.
    match &m.sender {
        Some(a) => {
            put_str(&mut out, a.local());
            put_str(&mut out, a.domain().as_str());
        }
        None => {
            put_str(&mut out, "");
            put_str(&mut out, "");
        }
    }
    out.extend_from_slice(&(m.recipients.len() as u32).to_be_bytes());
    for r in &m.recipients {
        let (kind, local, domain) = match &r.route {
            Route::Local { user, domain } => (0u8, user.as_str(), domain),
            Route::Remote(a) => (1u8, a.local(), a.domain()),
        };
        out.push(kind);
        put_str(&mut out, local);
        put_str(&mut out, domain.as_str());
        out.push(match r.status {
            Status::Pending => 0,
            Status::Delivered => 1,
            Status::Failed => 2,
        });
        out.extend_from_slice(&r.attempts.to_be_bytes());
        put_str(&mut out, &r.last_error);
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError::Other("corrupt queue record: truncated".into()));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn str(&mut self) -> Result<String, StoreError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| StoreError::Other("corrupt queue record: bad UTF-8".into()))
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Other(format!("corrupt queue record: {what}"))
}

/// Decodes a message record.
///
/// # Errors
/// When the bytes are not a record this version wrote.
pub fn decode(bytes: &[u8]) -> Result<Message, StoreError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if !(1..=VERSION).contains(&version) {
        return Err(corrupt("unknown version"));
    }
    let id = QueueId(r.u64()?);
    let arrived = r.u64()?;
    let size = r.u64()?;
    let chunks = r.u32()?;
    let next_attempt = r.u64()?;
    let (kind, delay_notified) = if version == 1 {
        (Kind::Normal, false)
    } else {
        let kind = match r.u8()? {
            0 => Kind::Normal,
            1 => Kind::Bounce,
            2 => Kind::DoubleBounce,
            _ => return Err(corrupt("bad kind")),
        };
        (kind, r.u8()? != 0)
    };
    let queued = if version >= 3 { r.u64()? } else { arrived };
    let domain = |d: String| Domain::parse(&d).map_err(|_| corrupt("bad domain"));
    let sender = match (r.str()?, r.str()?) {
        (l, d) if l.is_empty() && d.is_empty() => None,
        (l, d) => Some(Address::new(l, domain(d)?)),
    };
    let n = r.u32()? as usize;
    let mut recipients = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let kind = r.u8()?;
        let (local, d) = (r.str()?, r.str()?);
        let route = match kind {
            0 => Route::Local { user: local, domain: domain(d)? },
            1 => Route::Remote(Address::new(local, domain(d)?)),
            _ => return Err(corrupt("bad route kind")),
        };
        let status = match r.u8()? {
            0 => Status::Pending,
            1 => Status::Delivered,
            2 => Status::Failed,
            _ => return Err(corrupt("bad status")),
        };
        let attempts = r.u32()?;
        let last_error = r.str()?;
        recipients.push(Recipient { route, status, attempts, last_error });
    }
    Ok(Message { id, arrived, queued, sender, size, chunks, next_attempt, kind, delay_notified, recipients })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn domain(d: &str) -> Domain {
        Domain::parse(d).unwrap()
    }

    /// A record with a sender, one local and one remote recipient in every
    /// state a record can hold.
    pub(in crate::queue) fn sample() -> Message {
        Message {
            id: QueueId(0x0102_0304_0506_0708),
            arrived: 1000,
            queued: 1000,
            sender: Some(Address::parse("\"odd user\"@b.example").unwrap()),
            size: 11,
            chunks: 2,
            next_attempt: 1000,
            kind: Kind::Normal,
            delay_notified: false,
            recipients: vec![
                Recipient {
                    route: Route::Local { user: "alice".into(), domain: domain("a.example") },
                    status: Status::Pending,
                    attempts: 0,
                    last_error: String::new(),
                },
                Recipient {
                    route: Route::Remote(Address::parse("x@c.example").unwrap()),
                    status: Status::Pending,
                    attempts: 3,
                    last_error: "451 try later".into(),
                },
            ],
        }
    }

    /// Bytes written by hand, field by field, as a release of that version
    /// laid them out.
    #[derive(Default)]
    struct Bytes(Vec<u8>);

    impl Bytes {
        fn u8(mut self, v: u8) -> Bytes {
            self.0.push(v);
            self
        }
        fn u32(mut self, v: u32) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> Bytes {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn str(self, s: &str) -> Bytes {
            let mut b = self.u32(s.len() as u32);
            b.0.extend_from_slice(s.as_bytes());
            b
        }
    }

    /// The fields every version starts with: version, id, arrived, size,
    /// chunks, next attempt.
    fn fixed(version: u8) -> Bytes {
        Bytes::default().u8(version).u64(7).u64(1_600_000_000).u64(300).u32(1).u64(1_600_000_300)
    }

    /// The sender `bob@b.example` and two recipients, as every version
    /// writes them after its fixed fields.
    fn tail(b: Bytes) -> Vec<u8> {
        b.str("bob")
            .str("b.example")
            .u32(2)
            .u8(0)
            .str("alice")
            .str("a.example")
            .u8(1)
            .u32(1)
            .str("")
            .u8(1)
            .str("carol")
            .str("c.example")
            .u8(0)
            .u32(4)
            .str("451 4.7.1 greylisted")
            .0
    }

    /// What the bytes of [`tail`] describe, in a record of `kind`.
    fn expected(kind: Kind, delay_notified: bool, queued: u64) -> Message {
        Message {
            id: QueueId(7),
            arrived: 1_600_000_000,
            queued,
            sender: Some(Address::new("bob", domain("b.example"))),
            size: 300,
            chunks: 1,
            next_attempt: 1_600_000_300,
            kind,
            delay_notified,
            recipients: vec![
                Recipient {
                    route: Route::Local { user: "alice".into(), domain: domain("a.example") },
                    status: Status::Delivered,
                    attempts: 1,
                    last_error: String::new(),
                },
                Recipient {
                    route: Route::Remote(Address::new("carol", domain("c.example"))),
                    status: Status::Pending,
                    attempts: 4,
                    last_error: "451 4.7.1 greylisted".into(),
                },
            ],
        }
    }

    /// The text of the error `decode` gives for `bytes`.
    fn error(bytes: &[u8]) -> String {
        match decode(bytes) {
            Ok(m) => panic!("decoded {m:?}"),
            Err(StoreError::Other(e)) => e,
            Err(e) => panic!("not a corrupt record: {e:?}"),
        }
    }

    #[test]
    fn record_round_trip() {
        let m = sample();
        assert_eq!(decode(&encode(&m)).unwrap(), m);
        assert!(decode(&encode(&m)[..20]).is_err());
    }

    #[test]
    fn every_kind_state_and_null_sender_round_trips() {
        for kind in [Kind::Normal, Kind::Bounce, Kind::DoubleBounce] {
            for status in [Status::Pending, Status::Delivered, Status::Failed] {
                let mut m = sample();
                (m.kind, m.delay_notified, m.sender, m.queued) = (kind, true, None, 5);
                m.recipients[1].status = status;
                assert_eq!(decode(&encode(&m)).unwrap(), m, "{kind:?} {status:?}");
            }
        }
    }

    #[test]
    fn version_1_records_are_normal_mail_never_notified_queued_at_arrival() {
        let bytes = tail(fixed(1));
        assert_eq!(decode(&bytes).unwrap(), expected(Kind::Normal, false, 1_600_000_000));
    }

    #[test]
    fn version_2_records_keep_kind_and_notice_and_are_queued_at_arrival() {
        let cases =
            [(0, Kind::Normal, 0, false), (1, Kind::Bounce, 1, true), (2, Kind::DoubleBounce, 7, true)];
        for (byte, kind, notified, want) in cases {
            let bytes = tail(fixed(2).u8(byte).u8(notified));
            assert_eq!(decode(&bytes).unwrap(), expected(kind, want, 1_600_000_000), "{kind:?}");
        }
    }

    #[test]
    fn version_3_records_keep_their_queue_clock_time() {
        let bytes = tail(fixed(3).u8(1).u8(1).u64(42));
        assert_eq!(decode(&bytes).unwrap(), expected(Kind::Bounce, true, 42));
        assert_eq!(encode(&expected(Kind::Bounce, true, 42)), bytes, "what this release writes");
    }

    #[test]
    fn a_record_with_the_null_sender_has_no_sender() {
        let bytes = fixed(3).u8(0).u8(0).u64(9).str("").str("").u32(0).0;
        let m = decode(&bytes).unwrap();
        assert_eq!((m.sender, m.recipients.len()), (None, 0));
    }

    #[test]
    fn every_cut_of_every_version_is_truncated() {
        let records = [
            tail(fixed(1)),
            tail(fixed(2).u8(1).u8(0)),
            tail(fixed(3).u8(0).u8(0).u64(5)),
            encode(&sample()),
        ];
        for bytes in records {
            assert!(decode(&bytes).is_ok());
            for cut in 0..bytes.len() {
                assert_eq!(error(&bytes[..cut]), "corrupt queue record: truncated", "{cut} of {bytes:?}");
            }
        }
    }

    #[test]
    fn corrupt_records_say_what_is_wrong() {
        let v3 = || fixed(3).u8(0).u8(0).u64(5);
        let recipient = |b: Bytes| b.str("bob").str("b.example").u32(1);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "truncated"),
            (tail(fixed(0)), "unknown version"),
            (tail(fixed(4)), "unknown version"),
            (tail(fixed(255)), "unknown version"),
            (tail(fixed(2).u8(3).u8(0)), "bad kind"),
            (tail(fixed(3).u8(9).u8(0).u64(5)), "bad kind"),
            (v3().str("bob").str("").u32(0).0, "bad domain"),
            (v3().str("bob").str("not a domain").u32(0).0, "bad domain"),
            (v3().str("").str("").u32(1).u8(0).str("alice").str("-bad-").0, "bad domain"),
            (recipient(v3()).u8(2).str("x").str("c.example").0, "bad route kind"),
            (recipient(v3()).u8(1).str("x").str("c.example").u8(3).u32(0).str("").0, "bad status"),
            (v3().u32(2).0.into_iter().chain([0xff, 0xfe]).collect(), "bad UTF-8"),
            (recipient(v3()).u8(0).u32(1).0.into_iter().chain([0x80]).collect(), "bad UTF-8"),
            // A count of recipients the bytes cannot hold.
            (v3().str("").str("").u32(u32::MAX).0, "truncated"),
            // A string longer than what is left.
            (v3().u32(u32::MAX).0, "truncated"),
        ];
        for (bytes, want) in cases {
            assert_eq!(error(&bytes), format!("corrupt queue record: {want}"), "{bytes:?}");
        }
    }

    #[test]
    fn no_corruption_of_a_record_panics() {
        // Every byte of every version set to values that matter to the
        // decoder (0, 1, 2, 3, 0x80, 0xff) decodes or fails, never panics.
        let records = [tail(fixed(1)), tail(fixed(2).u8(2).u8(1)), encode(&sample())];
        for bytes in records {
            for at in 0..bytes.len() {
                for v in [0, 1, 2, 3, 0x80, 0xff] {
                    let mut b = bytes.clone();
                    b[at] = v;
                    let _ = decode(&b);
                }
            }
        }
    }
}
