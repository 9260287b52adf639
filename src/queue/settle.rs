//! Settling a delivery attempt: from what happened to each recipient tried,
//! the message's new state, when it is next due, and the report (bounce or
//! delay notice) the changes call for and to whom. Pure: no store, no clock,
//! no log lines; the attempt reads the time, applies the [`Settlement`] and
//! writes it.
#![forbid(unsafe_code)]

use super::bounce::{Notice, RecipientReport};
use super::record::{Kind, Message, Recipient, Status};
use super::schedule::Schedule;
use super::stats::Outcome;
use crate::deliver::remote::RecipientResult;
use crate::deliver::{Class, DeliveryError};
use crate::envelope::Address;
use crate::logtext::printable;
use crate::smtp::client::EnhancedCode;

/// The status of a recipient given up on for its age (RFC 3463: delivery
/// time expired), when its last error said nothing more definite.
const EXPIRED: EnhancedCode = EnhancedCode::new(4, 4, 7);

/// What became of one recipient tried in the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered: a Maildir file fsync'd or a remote `250`.
    Delivered,
    /// Given up for a permanent error.
    Failed,
    /// A transient error after the lifetime ran out: given up.
    Expired,
    /// A transient error: tried again later.
    Deferred,
}

impl Verdict {
    /// How the delivery counts see it.
    pub fn outcome(self) -> Outcome {
        match self {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Failed | Verdict::Expired => Outcome::Failed,
            Verdict::Deferred => Outcome::Deferred,
        }
    }
}

/// One recipient tried in the attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tried {
    /// Its place in the message's recipients.
    pub index: usize,
    /// What became of it.
    pub verdict: Verdict,
    /// Where it went (delivered) or the error as it came (the others), for
    /// the log.
    pub text: String,
}

/// Who a report goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportTo {
    /// The sender of the message reported on.
    Sender(Address),
    /// Postmaster of our primary domain: a report of ours failed.
    Postmaster,
}

impl ReportTo {
    /// The kind of the report as a queued message: what happens when it
    /// fails in its turn.
    pub fn kind(&self) -> Kind {
        match self {
            ReportTo::Sender(_) => Kind::Bounce,
            ReportTo::Postmaster => Kind::DoubleBounce,
        }
    }
}

/// The report an attempt calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// Send `notice` on `recipients` to `to`.
    Send { notice: Notice, to: ReportTo, recipients: Vec<RecipientReport> },
    /// Mail from the null sender: nobody is told.
    NullSender,
    /// A report to postmaster failed: it is dropped and nobody is told.
    Dropped,
}

/// An attempt's outcome, ready to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Settlement {
    /// The message's new state; the store removes it when no recipient is
    /// pending (see [`Settlement::next_due`]).
    pub message: Message,
    /// The recipients tried, in order.
    pub tried: Vec<Tried>,
    /// The report owed, if any.
    pub report: Option<Report>,
}

impl Settlement {
    /// When the message is next tried: `None` when no recipient is pending
    /// and it leaves the queue.
    pub fn next_due(&self) -> Option<u64> {
        self.message
            .recipients
            .iter()
            .any(|r| r.status == Status::Pending)
            .then_some(self.message.next_attempt)
    }
}

/// Applies `results` (one per recipient of `message`, `None` for those not
/// tried) at queue-clock time `now`: each recipient tried counts an attempt
/// and is delivered, failed or deferred; a transient error past the
/// lifetime fails it too. The next attempt is set from the most attempts of
/// a pending recipient, spread by `jitter` (in [0, 1)). Any failure calls
/// for one failure report on every recipient that failed in this attempt;
/// otherwise a deferral calls for one delay notice, once, when the message
/// is old enough, and only for mail from a client.
pub fn settle(
    mut message: Message,
    results: Vec<Option<RecipientResult>>,
    now: u64,
    schedule: &Schedule,
    jitter: f64,
) -> Settlement {
    let expired = schedule.expired(message.queued, now);
    let mut tried = Vec::new();
    let mut failed = Vec::new();
    let mut delayed = Vec::new();
    for (index, (r, result)) in message.recipients.iter_mut().zip(results).enumerate() {
        let Some(result) = result else { continue };
        r.attempts += 1;
        let (verdict, text) = match result {
            Ok(how) => {
                r.status = Status::Delivered;
                r.last_error.clear();
                (Verdict::Delivered, how)
            }
            Err(e) if e.class() == Class::Permanent => {
                r.status = Status::Failed;
                r.last_error = printable(e.text());
                failed.push(report_for(r, &e, e.status()));
                (Verdict::Failed, e.text().to_string())
            }
            Err(e) if expired => {
                r.status = Status::Failed;
                r.last_error = printable(e.text());
                // It failed for its age, unless the last error says more.
                let status = if e.status().is_unspecific() { EXPIRED } else { e.status() };
                failed.push(report_for(r, &e, status));
                (Verdict::Expired, e.text().to_string())
            }
            Err(e) => {
                r.last_error = printable(e.text());
                delayed.push(report_for(r, &e, e.status()));
                (Verdict::Deferred, e.text().to_string())
            }
        };
        tried.push(Tried { index, verdict, text });
    }
    let attempts =
        message.recipients.iter().filter(|r| r.status == Status::Pending).map(|r| r.attempts).max();
    message.next_attempt = now + schedule.delay(attempts.unwrap_or(1).max(1), jitter).as_secs().max(1);
    let report = if !failed.is_empty() {
        report(&message, Notice::Failed, failed)
    } else if !delayed.is_empty()
        && schedule.delay_notice_due(message.queued, now)
        && !message.delay_notified
        && message.kind == Kind::Normal
    {
        // Marked even when nobody can be told (the null sender): the
        // notice is never due again.
        message.delay_notified = true;
        report(&message, Notice::Delayed, delayed)
    } else {
        None
    };
    Settlement { message, tried, report }
}

/// Where a report on `message` goes: to the sender; for a failed report, to
/// postmaster once; a failed report to postmaster is dropped. Never to `<>`.
fn report(message: &Message, notice: Notice, recipients: Vec<RecipientReport>) -> Option<Report> {
    let to = match (message.kind, &message.sender) {
        (Kind::Normal, Some(sender)) => ReportTo::Sender(sender.clone()),
        (Kind::Normal, None) => return Some(Report::NullSender),
        (Kind::Bounce, _) if notice == Notice::Failed => ReportTo::Postmaster,
        (Kind::Bounce, _) => return None,
        (Kind::DoubleBounce, _) => return Some(Report::Dropped),
    };
    Some(Report::Send { notice, to, recipients })
}

/// The report on one recipient that `e` failed or delays: `status`, the
/// error's text as stored, and the remote MTA that said it.
fn report_for(r: &Recipient, e: &DeliveryError, status: EnhancedCode) -> RecipientReport {
    RecipientReport {
        recipient: r.route.address(),
        status: status.to_string(),
        diagnostic: (!r.last_error.is_empty()).then(|| r.last_error.clone()),
        remote_mta: e.remote_mta().map(printable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueConfig;
    use crate::envelope::{Domain, Route};
    use crate::queue::record::QueueId;

    const HOUR: u64 = 3600;
    /// Queue-clock time of arrival in every case.
    const QUEUED: u64 = 1_000_000;

    /// The default schedule: retries from 5 minutes, notice after 4 hours,
    /// lifetime 5 days.
    fn schedule() -> Schedule {
        Schedule::new(&QueueConfig::default())
    }

    fn recipient(address: &str, attempts: u32) -> Recipient {
        Recipient {
            route: Route::Remote(Address::parse(address).unwrap()),
            status: Status::Pending,
            attempts,
            last_error: String::new(),
        }
    }

    /// A message from bob with recipients `x@`, `y@` and a local `alice`.
    fn message(kind: Kind, sender: Option<&str>) -> Message {
        let mut local = recipient("alice@a.example", 0);
        local.route = Route::Local { user: "alice".into(), domain: Domain::parse("a.example").unwrap() };
        Message {
            id: QueueId(1),
            arrived: 1_700_000_000,
            queued: QUEUED,
            sender: sender.map(|s| Address::parse(s).unwrap()),
            size: 10,
            chunks: 1,
            next_attempt: QUEUED,
            kind,
            delay_notified: false,
            recipients: vec![recipient("x@c.example", 2), recipient("y@c.example", 0), local],
        }
    }

    fn delivered() -> Option<RecipientResult> {
        Some(Ok("250 2.0.0 ok".into()))
    }

    fn permanent() -> Option<RecipientResult> {
        Some(Err(DeliveryError::new(EnhancedCode::new(5, 1, 1), "550 5.1.1 no such user").at("mx.c.example")))
    }

    fn transient() -> Option<RecipientResult> {
        Some(Err(DeliveryError::new(EnhancedCode::new(4, 0, 0), "421 try later\r\n").at("mx.c.example")))
    }

    fn mailbox_full() -> Option<RecipientResult> {
        Some(Err(DeliveryError::new(EnhancedCode::new(4, 2, 2), "452 4.2.2 mailbox full")))
    }

    fn report_on(
        recipient: &str,
        status: &str,
        diagnostic: &str,
        remote_mta: Option<&str>,
    ) -> RecipientReport {
        RecipientReport {
            recipient: recipient.into(),
            status: status.into(),
            diagnostic: Some(diagnostic.into()),
            remote_mta: remote_mta.map(str::to_string),
        }
    }

    fn to_bob() -> ReportTo {
        ReportTo::Sender(Address::parse("bob@b.example").unwrap())
    }

    fn statuses(s: &Settlement) -> Vec<Status> {
        s.message.recipients.iter().map(|r| r.status).collect()
    }

    fn verdicts(s: &Settlement) -> Vec<(usize, Verdict)> {
        s.tried.iter().map(|t| (t.index, t.verdict)).collect()
    }

    use Status::{Delivered, Failed, Pending};

    #[test]
    fn settlements() {
        let bob = Some("bob@b.example");
        let normal = || message(Kind::Normal, bob);
        let notified = || Message { delay_notified: true, ..normal() };
        struct Case {
            why: &'static str,
            message: Message,
            results: Vec<Option<RecipientResult>>,
            age: u64,
            statuses: [Status; 3],
            verdicts: Vec<(usize, Verdict)>,
            report: Option<Report>,
            delay_notified: bool,
        }
        let failed_x = |status: &str, text: &str, mta| {
            Some(Report::Send {
                notice: Notice::Failed,
                to: to_bob(),
                recipients: vec![report_on("x@c.example", status, text, mta)],
            })
        };
        let cases = [
            Case {
                why: "all delivered: nothing pending, no report",
                message: normal(),
                results: vec![delivered(), delivered(), delivered()],
                age: 10,
                statuses: [Delivered, Delivered, Delivered],
                verdicts: vec![(0, Verdict::Delivered), (1, Verdict::Delivered), (2, Verdict::Delivered)],
                report: None,
                delay_notified: false,
            },
            Case {
                why: "delivered and deferred, young: due again, no report",
                message: normal(),
                results: vec![transient(), delivered(), delivered()],
                age: 10,
                statuses: [Pending, Delivered, Delivered],
                verdicts: vec![(0, Verdict::Deferred), (1, Verdict::Delivered), (2, Verdict::Delivered)],
                report: None,
                delay_notified: false,
            },
            Case {
                why: "a permanent failure: a failure report on that recipient",
                message: normal(),
                results: vec![permanent(), transient(), delivered()],
                age: 10,
                statuses: [Failed, Pending, Delivered],
                verdicts: vec![(0, Verdict::Failed), (1, Verdict::Deferred), (2, Verdict::Delivered)],
                report: failed_x("5.1.1", "550 5.1.1 no such user", Some("mx.c.example")),
                delay_notified: false,
            },
            Case {
                why: "a failure and a late deferral: the failure report only, no notice",
                message: normal(),
                results: vec![permanent(), transient(), None],
                age: 5 * HOUR,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Failed), (1, Verdict::Deferred)],
                report: failed_x("5.1.1", "550 5.1.1 no such user", Some("mx.c.example")),
                delay_notified: false,
            },
            Case {
                why: "transient past the lifetime: expired, reported as 4.4.7",
                message: normal(),
                results: vec![transient(), None, delivered()],
                age: 5 * 24 * HOUR,
                statuses: [Failed, Pending, Delivered],
                verdicts: vec![(0, Verdict::Expired), (2, Verdict::Delivered)],
                report: failed_x("4.4.7", "421 try later\\r\\n", Some("mx.c.example")),
                delay_notified: false,
            },
            Case {
                why: "expired with a definite status: that status",
                message: normal(),
                results: vec![mailbox_full(), None, None],
                age: 6 * 24 * HOUR,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Expired)],
                report: failed_x("4.2.2", "452 4.2.2 mailbox full", None),
                delay_notified: false,
            },
            Case {
                why: "deferred before the notice age: no notice",
                message: normal(),
                results: vec![transient(), None, None],
                age: 4 * HOUR - 1,
                statuses: [Pending, Pending, Pending],
                verdicts: vec![(0, Verdict::Deferred)],
                report: None,
                delay_notified: false,
            },
            Case {
                why: "deferred at the notice age: one delay notice",
                message: normal(),
                results: vec![transient(), mailbox_full(), delivered()],
                age: 4 * HOUR,
                statuses: [Pending, Pending, Delivered],
                verdicts: vec![(0, Verdict::Deferred), (1, Verdict::Deferred), (2, Verdict::Delivered)],
                report: Some(Report::Send {
                    notice: Notice::Delayed,
                    to: to_bob(),
                    recipients: vec![
                        report_on("x@c.example", "4.0.0", "421 try later\\r\\n", Some("mx.c.example")),
                        report_on("y@c.example", "4.2.2", "452 4.2.2 mailbox full", None),
                    ],
                }),
                delay_notified: true,
            },
            Case {
                why: "deferred once notified: no second notice",
                message: notified(),
                results: vec![transient(), None, None],
                age: 10 * HOUR,
                statuses: [Pending, Pending, Pending],
                verdicts: vec![(0, Verdict::Deferred)],
                report: None,
                delay_notified: true,
            },
            Case {
                why: "the null sender's failure: no report",
                message: message(Kind::Normal, None),
                results: vec![permanent(), None, None],
                age: 10,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Failed)],
                report: Some(Report::NullSender),
                delay_notified: false,
            },
            Case {
                why: "the null sender's expiry: no report",
                message: message(Kind::Normal, None),
                results: vec![transient(), None, None],
                age: 5 * 24 * HOUR,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Expired)],
                report: Some(Report::NullSender),
                delay_notified: false,
            },
            Case {
                why: "the null sender's delay: no notice, and none is due again",
                message: message(Kind::Normal, None),
                results: vec![transient(), None, None],
                age: 5 * HOUR,
                statuses: [Pending, Pending, Pending],
                verdicts: vec![(0, Verdict::Deferred)],
                report: Some(Report::NullSender),
                delay_notified: true,
            },
            Case {
                why: "a report of ours failed: to postmaster",
                message: message(Kind::Bounce, None),
                results: vec![permanent(), None, None],
                age: 10,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Failed)],
                report: Some(Report::Send {
                    notice: Notice::Failed,
                    to: ReportTo::Postmaster,
                    recipients: vec![report_on(
                        "x@c.example",
                        "5.1.1",
                        "550 5.1.1 no such user",
                        Some("mx.c.example"),
                    )],
                }),
                delay_notified: false,
            },
            Case {
                why: "a report of ours delayed: no notice about it",
                message: message(Kind::Bounce, None),
                results: vec![transient(), None, None],
                age: 5 * HOUR,
                statuses: [Pending, Pending, Pending],
                verdicts: vec![(0, Verdict::Deferred)],
                report: None,
                delay_notified: false,
            },
            Case {
                why: "a report to postmaster failed: dropped",
                message: message(Kind::DoubleBounce, None),
                results: vec![permanent(), None, None],
                age: 10,
                statuses: [Failed, Pending, Pending],
                verdicts: vec![(0, Verdict::Failed)],
                report: Some(Report::Dropped),
                delay_notified: false,
            },
        ];
        for case in cases {
            let why = case.why;
            let before = case.message.clone();
            let s = settle(case.message, case.results, QUEUED + case.age, &schedule(), 0.5);
            assert_eq!(statuses(&s), case.statuses, "{why}");
            assert_eq!(verdicts(&s), case.verdicts, "{why}");
            assert_eq!(s.report, case.report, "{why}");
            assert_eq!(s.message.delay_notified, case.delay_notified, "{why}");
            for (i, (old, new)) in before.recipients.iter().zip(&s.message.recipients).enumerate() {
                let tried = u32::from(case.verdicts.iter().any(|&(t, _)| t == i));
                assert_eq!(new.attempts, old.attempts + tried, "{why}: attempts of {i}");
                assert_eq!(new.route, old.route, "{why}");
            }
            let pending = case.statuses.contains(&Pending);
            assert_eq!(s.next_due().is_some(), pending, "{why}");
            let (mut rest, mut want) = (s.message.clone(), before.clone());
            (rest.recipients, rest.next_attempt, rest.delay_notified) = (vec![], 0, false);
            (want.recipients, want.next_attempt, want.delay_notified) = (vec![], 0, false);
            assert_eq!(rest, want, "{why}: nothing else changes");
        }
    }

    #[test]
    fn tried_recipients_keep_the_error_as_stored_and_as_logged() {
        let s = settle(
            message(Kind::Normal, None),
            vec![transient(), delivered(), None],
            QUEUED,
            &schedule(),
            0.5,
        );
        assert_eq!(
            s.message.recipients[0].last_error, "421 try later\\r\\n",
            "printable: the line break escaped"
        );
        assert_eq!(s.tried[0].text, "421 try later\r\n", "as it came, escaped by the log");
        assert_eq!(s.tried[1].text, "250 2.0.0 ok");
        let mut earlier = message(Kind::Normal, None);
        earlier.recipients[1].last_error = "old error".into();
        let s = settle(earlier, vec![None, delivered(), None], QUEUED, &schedule(), 0.5);
        assert_eq!(s.message.recipients[1].last_error, "", "cleared once delivered");
        assert_eq!(s.message.recipients[0].last_error, "", "untried: as it was");
    }

    #[test]
    fn the_next_attempt_backs_off_by_the_most_attempts_pending() {
        let now = QUEUED + 100;
        let cases = [
            // (results, jitter, due in, why)
            (vec![transient(), None, None], 0.5, 20 * 60, "x tried a third time: the third delay"),
            (vec![None, transient(), None], 0.5, 10 * 60, "x untried still counts its two attempts"),
            (vec![delivered(), transient(), None], 0.5, 5 * 60, "y's first failure"),
            (vec![delivered(), delivered(), transient()], 0.0, 255, "jitter spreads it"),
            (vec![delivered(), delivered(), delivered()], 0.5, 5 * 60, "nothing pending: as for one attempt"),
        ];
        for (results, jitter, due_in, why) in cases {
            let s = settle(message(Kind::Normal, None), results, now, &schedule(), jitter);
            assert_eq!(s.message.next_attempt, now + due_in, "{why}");
        }
    }

    #[test]
    fn a_settlement_is_due_only_while_a_recipient_is_pending() {
        let s = settle(
            message(Kind::Normal, None),
            vec![delivered(), permanent(), delivered()],
            QUEUED,
            &schedule(),
            0.5,
        );
        assert_eq!(s.next_due(), None);
        let s = settle(
            message(Kind::Normal, None),
            vec![delivered(), transient(), delivered()],
            QUEUED,
            &schedule(),
            0.5,
        );
        assert_eq!(s.next_due(), Some(QUEUED + 300));
    }

    #[test]
    fn verdicts_count_as_outcomes() {
        assert_eq!(Verdict::Delivered.outcome(), Outcome::Delivered);
        assert_eq!(Verdict::Failed.outcome(), Outcome::Failed);
        assert_eq!(Verdict::Expired.outcome(), Outcome::Failed);
        assert_eq!(Verdict::Deferred.outcome(), Outcome::Deferred);
        assert_eq!(to_bob().kind(), Kind::Bounce);
        assert_eq!(ReportTo::Postmaster.kind(), Kind::DoubleBounce);
    }
}
