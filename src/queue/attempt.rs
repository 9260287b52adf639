//! One delivery attempt of one queued message: local recipients into their
//! Maildirs, remote ones through the SMTP client (grouped by domain), then
//! the new state of every recipient, and the bounce or delay notice it calls
//! for, recorded together.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::bounce::{self, Dsn, RecipientReport};
use super::schedule::Schedule;
use super::settle::{self, ReportTo, Settlement, Tried, Verdict, settle};
use super::store::{Message, QueueId, ReadError, Recipient, Status, unix_now};
use super::{HOLD_BROKEN, Queue, Report};
use crate::Settings;
use crate::accounts::Resolution;
use crate::deliver::DeliveryError;
use crate::deliver::remote::{Client, Outgoing, RecipientResult};
use crate::envelope::{Address, Route};
use crate::logtext::{quoted, word};
use crate::mailbox;
use crate::message::delivery_headers;
use crate::smtp::client::EnhancedCode;

/// The most header bytes of the original message a report quotes.
const MAX_QUOTED_HEADERS: usize = 64 * 1024;

impl Queue {
    /// Delivers message `id` to every pending recipient and records the outcome.
    pub(super) async fn attempt(
        self: &Arc<Queue>,
        id: QueueId,
        settings: &Settings,
        client: &Client,
        jitter: f64,
    ) {
        let mut message = match self.store.message(id) {
            Ok(Some(m)) => m,
            Ok(None) => return self.finished(id, Some(self.store.now() + HOLD_BROKEN)),
            Err(e) => {
                log::error!(target: "mail", "id={id} status=error error={}", quoted(&format!("{e}; held for an hour")));
                return self.finished(id, Some(self.store.now() + HOLD_BROKEN));
            }
        };
        let mut results: Vec<Option<RecipientResult>> = vec![None; message.recipients.len()];
        let mut remote: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        // Every local recipient is handed to the Maildir writer before any
        // answer is awaited, so they share one batch.
        let mut local = Vec::new();
        for (i, r) in message.recipients.iter().enumerate() {
            if r.status != Status::Pending {
                continue;
            }
            match &r.route {
                Route::Local { user, domain } => {
                    let key = self.maildir_key(&message, i, r.attempts);
                    local.push((i, self.deliver_local(&message, user, domain, key, settings).await));
                }
                Route::Remote(a) => remote.entry(a.domain().as_str().to_string()).or_default().push(i),
            }
        }
        for (i, pending) in local {
            results[i] = Some(match pending {
                Ok(pending) => pending.wait().await.map(|d| {
                    let path = d.path.display();
                    if d.earlier {
                        format!("{path} (written by an earlier attempt)")
                    } else {
                        path.to_string()
                    }
                }),
                Err(e) => Err(e),
            });
        }
        // The local copies are durable: record them now, not after the
        // remote conversations, so neither a crash nor a stop while those
        // go on brings a second copy.
        if !remote.is_empty() {
            let early: Vec<Option<RecipientResult>> =
                results.iter_mut().map(|r| if matches!(r, Some(Ok(_))) { r.take() } else { None }).collect();
            if early.iter().any(Option::is_some) {
                // Deliveries alone call for no report.
                (message, _) = self.conclude(message, early, settings, jitter);
                self.progress(message.clone());
            }
        }
        let mut remote_delivered = false;
        for (domain, indexes) in remote {
            let recipients: Vec<Address> = indexes
                .iter()
                .filter_map(|&i| match &message.recipients[i].route {
                    Route::Remote(a) => Some(a.clone()),
                    Route::Local { .. } => None,
                })
                .collect();
            let store = &self.store;
            let piece = move |n: u32| store.chunk(id, n).map_err(|e| std::io::Error::other(e.to_string()));
            let outgoing = Outgoing {
                sender: message.sender.as_ref(),
                recipients: &recipients,
                size: message.size,
                pieces: message.chunks,
                piece: &piece,
            };
            let outcome = client.deliver(&domain, &outgoing).await;
            for (i, result) in indexes.into_iter().zip(outcome) {
                remote_delivered |= result.is_ok();
                results[i] = Some(result);
            }
        }
        // The remote connections are over: another attempt may use the place.
        let _ = self.events.try_send(super::Event::Delivered(id));
        let (message, report) = self.conclude(message, results, settings, jitter);
        self.record(message, report);
        // A crash before a remote 250 is recorded sends the message again
        // (RFC 1047): that record waits for no company.
        if remote_delivered {
            self.commit_now();
        }
    }

    /// What names recipient `index`'s copy of `message` in its Maildir, at
    /// every attempt: the queue id and the store's tag (unique across stores
    /// and restarts, see [`super::store::Store::tag`]) and the recipient's
    /// place in the record, which never changes. An earlier copy is looked
    /// for only where one may be: the message was queued before this process
    /// started, or an earlier attempt on this recipient failed.
    fn maildir_key(&self, message: &Message, index: usize, attempts: u32) -> mailbox::Key {
        mailbox::Key {
            secs: message.arrived,
            unique: format!("Q{}N{index}I{:016x}", message.id, self.store.tag()),
            look: message.id < self.first_id || attempts > 0,
        }
    }

    /// Hands a local recipient's copy to the Maildir writer.
    async fn deliver_local(
        &self,
        message: &Message,
        user: &str,
        domain: &crate::envelope::Domain,
        key: mailbox::Key,
        settings: &Settings,
    ) -> Result<mailbox::Pending, DeliveryError> {
        if !settings.accounts.is_user(user, domain) {
            return Err(DeliveryError::ours(
                EnhancedCode::new(5, 1, 1),
                format!("mailbox {user}@{domain} no longer exists"),
            ));
        }
        let config = &settings.config;
        let dir = mailbox::path(&config.mail_root, domain.as_str(), user);
        let headers = delivery_headers(
            message.sender.as_ref().map(ToString::to_string).as_deref(),
            &format!("{user}@{domain}"),
        );
        let store = Arc::clone(&self.store);
        let m = message.clone();
        let job = mailbox::Job {
            dir,
            hostname: config.hostname.clone(),
            headers,
            crlf_size: message.size,
            body: Box::new(move |w| {
                store.read_body(&m, |piece| w.write_all(piece)).map_err(|e| match e {
                    ReadError::Io(io) => io,
                    ReadError::Store(s) => std::io::Error::other(s.to_string()),
                })
            }),
            key,
        };
        Ok(self.maildir.submit(job).await)
    }

    /// Settles the attempt (see [`settle`]) on the queue clock: counts and
    /// logs what became of each recipient tried, and renders the report it
    /// calls for. Returns the message's new state and the report to queue
    /// with it.
    pub(super) fn conclude(
        &self,
        message: Message,
        results: Vec<Option<RecipientResult>>,
        settings: &Settings,
        jitter: f64,
    ) -> (Message, Report) {
        let id = message.id;
        let schedule = Schedule::new(&settings.config.queue);
        // Ages and due times are on the queue clock, which no jump of the
        // wall clock moves.
        let now = self.store.now();
        let Settlement { message, tried, report } = settle(message, results, now, &schedule, jitter);
        for Tried { index, verdict, text } in &tried {
            let r = &message.recipients[*index];
            let address = r.route.address();
            let to = word(&address);
            self.stats.count(verdict.outcome(), now);
            match verdict {
                Verdict::Delivered => {
                    log::info!(target: "mail", "id={id} to=<{to}> status=delivered attempts={} result={}", r.attempts, quoted(text));
                }
                Verdict::Failed => {
                    log::info!(target: "mail", "id={id} to=<{to}> status=failed error={}", quoted(text))
                }
                Verdict::Expired => {
                    log::info!(target: "mail", "id={id} to=<{to}> status=expired error={}", quoted(text))
                }
                Verdict::Deferred => {
                    log::info!(target: "mail", "id={id} to=<{to}> status=deferred attempts={} error={}", r.attempts, quoted(text));
                }
            }
        }
        let report = match report {
            None => None,
            Some(settle::Report::NullSender) => {
                log::info!(target: "mail", "id={id} status=no-report reason=\"null sender\"");
                None
            }
            Some(settle::Report::Dropped) => {
                log::warn!(target: "mail", "id={id} status=dropped reason=\"a report to postmaster could not be delivered\"");
                None
            }
            Some(settle::Report::Send { notice, to, recipients }) => {
                self.report(&message, notice, &to, &recipients, settings)
            }
        };
        (message, report)
    }

    /// A delivery report on `message` for `recipients`, as a new queued
    /// message to `to`.
    fn report(
        &self,
        message: &Message,
        notice: bounce::Notice,
        to: &ReportTo,
        recipients: &[RecipientReport],
        settings: &Settings,
    ) -> Option<Box<(Message, Vec<u8>)>> {
        let id = message.id;
        let accounts = &settings.accounts;
        let report_kind = to.kind();
        let to = match to {
            ReportTo::Sender(sender) => sender.clone(),
            ReportTo::Postmaster => Address::new("postmaster", accounts.primary_domain().clone()),
        };
        let routes = match accounts.resolve(&to) {
            Resolution::TooMany => {
                log::warn!(target: "mail", "id={id} status=no-report reason=\"the sender's address expands to too many recipients\"");
                return None;
            }
            Resolution::Deliver(routes) => routes,
            Resolution::NotLocal => vec![Route::Remote(to.clone())],
            Resolution::UnknownUser => {
                log::warn!(target: "mail", "id={id} status=no-report reason={}", quoted(&format!("no local mailbox for <{to}>")));
                return None;
            }
        };
        let mut quoted = self.store.chunk(id, 0).ok().flatten().unwrap_or_default();
        if let Ok(Some(first)) = self.store.chunk(id, 1) {
            quoted.extend_from_slice(&first[..first.len().min(MAX_QUOTED_HEADERS)]);
        }
        let report_id = self.store.new_id();
        let hostname = &settings.config.hostname;
        let now = SystemTime::now();
        let message_id = format!("<{report_id}.dsn@{hostname}>");
        let boundary = format!("{report_id}/{hostname}");
        let body = bounce::render(&Dsn {
            notice,
            reporting_mta: hostname,
            queue_id: &id.to_string(),
            original_sender: &to.to_string(),
            arrival: UNIX_EPOCH + Duration::from_secs(message.arrived),
            now,
            recipients,
            original_headers: bounce::header_section(&quoted, MAX_QUOTED_HEADERS),
            message_id: &message_id,
            boundary: &boundary,
        });
        let queued = self.store.now();
        let report = Message {
            id: report_id,
            arrived: unix_now(),
            queued,
            sender: None,
            size: body.len() as u64,
            chunks: 1,
            next_attempt: queued,
            kind: report_kind,
            delay_notified: false,
            recipients: routes
                .into_iter()
                .map(|route| Recipient {
                    route,
                    status: Status::Pending,
                    attempts: 0,
                    last_error: String::new(),
                })
                .collect(),
        };
        let what = if notice == bounce::Notice::Failed { "bounced" } else { "delay-notice" };
        log::info!(target: "mail", "id={id} status={what} report={report_id} to=<{}>", word(&to.to_string()));
        Some(Box::new((report, body)))
    }
}
