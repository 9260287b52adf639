//! One delivery attempt of one queued message: local recipients into their
//! Maildirs, remote ones through the SMTP client (grouped by domain), then
//! the new state of every recipient, and the bounce or delay notice it calls
//! for, recorded together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::bounce::{self, Dsn, RecipientReport};
use super::schedule::Schedule;
use super::stats::Outcome;
use super::store::{Kind, Message, QueueId, ReadError, Recipient, Status, unix_now};
use super::{HOLD_BROKEN, Queue};
use crate::Settings;
use crate::accounts::Resolution;
use crate::deliver::remote::{Client, Outgoing, RecipientResult};
use crate::deliver::{Class, DeliveryError, maildir};
use crate::envelope::{Address, Route};
use crate::logtext::{printable, quoted, word};
use crate::message::delivery_headers;
use crate::smtp::client::EnhancedCode;

/// The most header bytes of the original message a report quotes.
const MAX_QUOTED_HEADERS: usize = 64 * 1024;

/// The status of a recipient given up on for its age (RFC 3463: delivery
/// time expired), when its last error said nothing more definite.
const EXPIRED: EnhancedCode = EnhancedCode::new(4, 4, 7);

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
                let _ = self.conclude(&mut message, early, settings, jitter);
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
        let report = self.conclude(&mut message, results, settings, jitter);
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
    fn maildir_key(&self, message: &Message, index: usize, attempts: u32) -> maildir::Key {
        maildir::Key {
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
        key: maildir::Key,
        settings: &Settings,
    ) -> Result<maildir::Pending, DeliveryError> {
        if !settings.accounts.is_user(user, domain) {
            return Err(DeliveryError::ours(
                EnhancedCode::new(5, 1, 1),
                format!("mailbox {user}@{domain} no longer exists"),
            ));
        }
        let config = &settings.config;
        let dir = maildir::path(&config.mail_root, domain.as_str(), user);
        let headers = delivery_headers(
            message.sender.as_ref().map(ToString::to_string).as_deref(),
            &format!("{user}@{domain}"),
        );
        let store = Arc::clone(&self.store);
        let m = message.clone();
        let job = maildir::Job {
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

    /// Applies the results to the message's recipients, logs each, sets the
    /// next attempt, and writes the report the changes call for.
    pub(super) fn conclude(
        &self,
        message: &mut Message,
        results: Vec<Option<RecipientResult>>,
        settings: &Settings,
        jitter: f64,
    ) -> Option<Box<(Message, Vec<u8>)>> {
        let id = message.id;
        let config = &settings.config;
        let schedule = Schedule::new(&config.queue);
        // Ages and due times are on the queue clock, which no jump of the
        // wall clock moves.
        let now = self.store.now();
        let expired = schedule.expired(message.queued, now);
        let mut failed = Vec::new();
        let mut delayed = Vec::new();
        for (r, result) in message.recipients.iter_mut().zip(results) {
            let Some(result) = result else { continue };
            r.attempts += 1;
            let address = r.route.address();
            let to = word(&address);
            match result {
                Ok(how) => {
                    self.stats.count(Outcome::Delivered, now);
                    r.status = Status::Delivered;
                    r.last_error.clear();
                    log::info!(target: "mail", "id={id} to=<{to}> status=delivered attempts={} result={}", r.attempts, quoted(&how));
                }
                Err(e) if e.class() == Class::Permanent => {
                    self.stats.count(Outcome::Failed, now);
                    log::info!(target: "mail", "id={id} to=<{to}> status=failed error={}", quoted(e.text()));
                    r.status = Status::Failed;
                    r.last_error = printable(e.text());
                    failed.push(report_for(r, &e, e.status()));
                }
                Err(e) if expired => {
                    self.stats.count(Outcome::Failed, now);
                    log::info!(target: "mail", "id={id} to=<{to}> status=expired error={}", quoted(e.text()));
                    r.status = Status::Failed;
                    r.last_error = printable(e.text());
                    // It failed for its age, unless the last error says more.
                    let status = if e.status().is_unspecific() { EXPIRED } else { e.status() };
                    failed.push(report_for(r, &e, status));
                }
                Err(e) => {
                    self.stats.count(Outcome::Deferred, now);
                    log::info!(target: "mail", "id={id} to=<{to}> status=deferred attempts={} error={}", r.attempts, quoted(e.text()));
                    r.last_error = printable(e.text());
                    delayed.push(report_for(r, &e, e.status()));
                }
            }
        }
        let attempts =
            message.recipients.iter().filter(|r| r.status == Status::Pending).map(|r| r.attempts).max();
        message.next_attempt = now + schedule.delay(attempts.unwrap_or(1).max(1), jitter).as_secs().max(1);
        if !failed.is_empty() {
            return self.report(message, bounce::Notice::Failed, &failed, settings);
        }
        let late = now.saturating_sub(message.queued) >= config.queue.delay_notice.as_secs();
        if !delayed.is_empty() && late && !message.delay_notified && message.kind == Kind::Normal {
            message.delay_notified = true;
            return self.report(message, bounce::Notice::Delayed, &delayed, settings);
        }
        None
    }

    /// A delivery report on `message` for `recipients`, as a new queued
    /// message: to the sender; for a failed report, to postmaster once; a
    /// failed report to postmaster is dropped. Never to `<>`.
    fn report(
        &self,
        message: &Message,
        notice: bounce::Notice,
        recipients: &[RecipientReport],
        settings: &Settings,
    ) -> Option<Box<(Message, Vec<u8>)>> {
        let id = message.id;
        let accounts = &settings.accounts;
        let (to, report_kind) = match (message.kind, &message.sender) {
            (Kind::Normal, Some(sender)) => (sender.clone(), Kind::Bounce),
            (Kind::Normal, None) => {
                log::info!(target: "mail", "id={id} status=no-report reason=\"null sender\"");
                return None;
            }
            (Kind::Bounce, _) if notice == bounce::Notice::Failed => {
                (Address::new("postmaster", accounts.primary_domain().clone()), Kind::DoubleBounce)
            }
            (Kind::Bounce, _) => return None,
            (Kind::DoubleBounce, _) => {
                log::warn!(target: "mail", "id={id} status=dropped reason=\"a report to postmaster could not be delivered\"");
                return None;
            }
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
