//! Erasing a customer: its right to be forgotten, in an immutable log.
//!
//! Every personal field written since sealing is sealed with the customer's
//! key (crate `sealing`), so destroying the key forgets them. An erasure:
//!
//! 1. finds the customer's tickets: every opening sealed with its key, and
//!    every opening stored in clear (before sealing) with its name;
//! 2. appends `CustomerErased` to each (the projector then writes
//!    [`domain::ERASED`] over the ticket's personal fields in every read
//!    model, keeping ids, statuses and counts; the ticket takes no more
//!    changes);
//! 3. rewrites the personal fields of the events stored in clear to
//!    [`domain::ERASED`] (`EventStore::redact`, the one exception to
//!    immutability, which the store records);
//! 4. destroys the key.
//!
//! In that order, so that an erasure stopped at any point can simply be run
//! again: until the key is gone the tickets are found by it, appending to an
//! erased ticket appends nothing, and a rewrite or a destruction done twice
//! changes nothing more. Once the key is gone there is nothing left to find.
//!
//! [`Eraser`] then waits (within a bound) for the read models to reach the
//! last `CustomerErased` and scrubs the store's files (`KeyStore::scrub`),
//! so that no page image of the old rows or of the key stays behind.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use readmodel::{Projection, Target, ViewReader};
use sealing::KeyStore;

use eventstore::{EventStore, Payload, RecordedEvent, StoreError};
use sealing::{Keyring, personal_fields, sealed_key};
use serde_json::Value;
use uuid::Uuid;

use crate::{CommandContext, CommandService, WriteError};

/// Events read per page while looking for the customer's tickets.
const PAGE: usize = 1_000;

/// Beyond the key caches' age bound, for an open already past its key
/// lookup to reach the store before the second look for tickets.
const LATE_OPEN_SLACK: Duration = Duration::from_millis(500);

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// The customer's tickets.
    pub tickets: usize,
    /// Of them, the ones this run appended `CustomerErased` to (the rest
    /// were erased already).
    pub newly_erased: usize,
    /// Events stored in clear whose personal fields were rewritten.
    pub rewritten: usize,
    /// Whether the customer had a key, now destroyed.
    pub key_destroyed: bool,
    /// The position of the last `CustomerErased` appended (0 when none
    /// was): read models reflect the erasure once they reach it.
    pub position: u64,
    /// Whether the read models reached `position` within the wait, and the
    /// store's files were scrubbed after them. When not, the projector
    /// rewrites the rows when it gets there, and the files are scrubbed at
    /// the next erasure or as the store reuses its pages.
    pub views_scrubbed: bool,
}

/// Erases customers: the services an erasure needs, in one place.
#[derive(Debug, Clone)]
pub struct Eraser {
    pub commands: Arc<CommandService>,
    /// The events as stored.
    pub raw: Arc<dyn EventStore>,
    pub keyring: Arc<Keyring>,
    pub keys: Arc<dyn KeyStore>,
    pub views: Arc<dyn ViewReader>,
}

/// How often the read models' checkpoints are read while waiting for them.
const VIEWS_POLL: Duration = Duration::from_millis(50);

impl Eraser {
    /// Erases `customer`, then waits up to `wait` for the read models to
    /// show it and scrubs the files (see the module doc).
    pub async fn erase(
        &self,
        customer: &str,
        context: CommandContext,
        wait: Duration,
    ) -> Result<ErasureReport, ErasureError> {
        let mut report = erase_customer(
            &self.commands,
            self.raw.as_ref(),
            &self.keyring,
            customer,
            context,
        )
        .await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut reached = true;
            for projection in [Projection::Detail, Projection::List] {
                reached &= self
                    .views
                    .checkpoint(projection, Target::Live)
                    .await
                    .map_err(|e| ErasureError::Store(StoreError::unavailable(e)))?
                    >= report.position;
            }
            if reached {
                self.keys.scrub().await?;
                report.views_scrubbed = true;
                return Ok(report);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(report);
            }
            tokio::time::sleep(VIEWS_POLL).await;
        }
    }
}

/// Why an erasure stopped.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] sealing::KeyError),
}

/// Erases `customer` (see the module doc). `commands` appends through the
/// sealed store; `raw` is the store underneath, read as stored.
pub async fn erase_customer(
    commands: &CommandService,
    raw: &dyn EventStore,
    keyring: &Keyring,
    customer: &str,
    context: CommandContext,
) -> Result<ErasureReport, ErasureError> {
    let key = keyring.find(customer).await?;
    let found = find_tickets(raw, key, customer).await?;
    let mut report = ErasureReport {
        tickets: found.tickets.len(),
        ..ErasureReport::default()
    };
    for ticket in &found.tickets {
        let rewritten = found
            .in_clear
            .iter()
            .filter(|event| event.ticket_id == *ticket)
            .map(|event| event.version)
            .collect();
        let outcome = commands.erase(*ticket, rewritten, context.clone()).await?;
        if outcome.appended > 0 {
            report.newly_erased += 1;
            report.position = report.position.max(outcome.position);
        }
    }
    for event in &found.in_clear {
        raw.redact(event.ticket_id, event.version, erased_payload(event))
            .await?;
        report.rewritten += 1;
    }
    if let Some(key) = key {
        report.key_destroyed = keyring.destroy(key).await?;
        // A ticket opened meanwhile, by a process that still had the key in
        // its cache, is sealed with the destroyed key: erased in effect (it
        // reads erased and refuses changes), and made so by its own
        // `CustomerErased` once caches have let the key go.
        tokio::time::sleep(sealing::keys::CUSTOMER_CACHE_TTL + LATE_OPEN_SLACK).await;
        let late = find_tickets(raw, Some(key), customer).await?;
        for ticket in late.tickets.difference(&found.tickets) {
            let outcome = commands.erase(*ticket, Vec::new(), context.clone()).await?;
            report.tickets += 1;
            if outcome.appended > 0 {
                report.newly_erased += 1;
                report.position = report.position.max(outcome.position);
            }
        }
    }
    tracing::info!(
        tickets = report.tickets,
        newly_erased = report.newly_erased,
        rewritten = report.rewritten,
        key_destroyed = report.key_destroyed,
        "customer erased"
    );
    Ok(report)
}

/// The customer's tickets, and its events whose personal fields are stored
/// in clear.
#[derive(Debug, Default)]
struct Found {
    tickets: BTreeSet<Uuid>,
    in_clear: Vec<RecordedEvent>,
}

/// One pass over the whole store in (ticket, version) order: an opening
/// names its ticket's customer, by key or in clear, and the ticket's other
/// events follow it.
async fn find_tickets(
    raw: &dyn EventStore,
    key: Option<Uuid>,
    customer: &str,
) -> Result<Found, StoreError> {
    let mut found = Found::default();
    let mut theirs = false;
    let mut after = None;
    loop {
        let page = raw.read_by_ticket(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = Some((last.ticket_id, last.version));
        for event in page {
            if event.version == 1 {
                theirs = match sealed_key(&event.data) {
                    Some(sealed_with) => Some(sealed_with) == key,
                    None => event.data.to_value()["customer"].as_str() == Some(customer),
                };
                if theirs {
                    found.tickets.insert(event.ticket_id);
                }
            }
            let personal = !personal_fields(&event.event_type).is_empty();
            if theirs && personal && !sealing::is_sealed(&event.data) && !is_erased(&event) {
                found.in_clear.push(event);
            }
        }
    }
}

/// Whether every personal field of a clear event reads erased already.
fn is_erased(event: &RecordedEvent) -> bool {
    let value = event.data.to_value();
    personal_fields(&event.event_type).iter().all(|field| {
        value[*field]
            .as_str()
            .is_none_or(|text| text == domain::ERASED)
    })
}

/// The payload with every personal field set to [`domain::ERASED`].
fn erased_payload(event: &RecordedEvent) -> Payload {
    let mut value = event.data.to_value();
    if let Value::Object(fields) = &mut value {
        for field in personal_fields(&event.event_type) {
            if fields.contains_key(*field) {
                fields.insert(
                    (*field).to_owned(),
                    Value::String(domain::ERASED.to_owned()),
                );
            }
        }
    }
    Payload::from_value(&value)
}
