//! The seeded data: N tickets generated from their index alone, so every run
//! (and the naive table beside the event store) holds the same tickets.
//!
//! Ticket `i` is opened by customer `i·7919 mod C`, where C is 1000 (the
//! default seed: a thousand tickets per customer at 1,000,000 tickets) or
//! about one in ten of the tickets (the sealed seed, [`chunk_with`]: ten
//! tickets per customer, spread over the whole history as a real
//! customer's are); three in four are
//! triaged, four in five get an agent (50 agents), every second gets a note,
//! one in four is closed: about 3.3 events per ticket, and every list filter
//! and dashboard count has rows. Tickets are generated in chunks whose events
//! interleave (all opens, then all triages, …), as a live store's would, with
//! times one millisecond apart in position order.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::Event;
use eventstore::{Metadata, NewEvent};
use uuid::Uuid;

pub const CUSTOMERS: u64 = 1000;
pub const AGENTS: u64 = 50;

/// Tickets per customer in the sealed seed and the `commands` workload.
pub const TICKETS_PER_CUSTOMER: u64 = 10;

pub fn customer(n: u64) -> String {
    customer_of(n, CUSTOMERS)
}

/// Customer `n mod customers`.
pub fn customer_of(n: u64, customers: u64) -> String {
    format!("customer-{:04}", n % customers.max(1))
}

/// The customers of a sealed seed of `tickets` tickets: about one in
/// [`TICKETS_PER_CUSTOMER`], and prime to the seed's stride (7919), so that
/// every one of them opens tickets.
pub fn customers_for(tickets: u64) -> u64 {
    let mut customers = tickets.div_ceil(TICKETS_PER_CUSTOMER).max(1);
    if customers.is_multiple_of(7919) {
        customers += 1;
    }
    customers
}

pub fn agent(n: u64) -> String {
    format!("agent-{:02}", n % AGENTS)
}

/// A ticket as it ends up, for the naive table.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalTicket {
    pub id: Uuid,
    pub customer: String,
    pub subject: String,
    pub message: String,
    pub status: &'static str,
    pub agent: Option<String>,
    /// (text, added_at), oldest first.
    pub notes: Vec<(String, DateTime<Utc>)>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One chunk of tickets: their events in append order, and their end states.
#[derive(Debug, Default)]
pub struct Chunk {
    pub events: Vec<(Uuid, NewEvent)>,
    pub tickets: Vec<FinalTicket>,
}

/// Hands out event times one millisecond apart, from a fixed start.
#[derive(Debug, Clone)]
pub struct Clock(DateTime<Utc>);

impl Default for Clock {
    fn default() -> Self {
        Clock(
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        )
    }
}

impl Clock {
    fn tick(&mut self) -> DateTime<Utc> {
        self.0 += Duration::milliseconds(1);
        self.0
    }
}

/// The events ticket `i` goes through, in order.
pub fn script(i: u64) -> Vec<Event> {
    script_with(i, CUSTOMERS)
}

/// [`script`] with `customers` customers.
pub fn script_with(i: u64, customers: u64) -> Vec<Event> {
    let mut events = vec![Event::TicketOpened {
        customer: customer_of(i.wrapping_mul(7919), customers),
        subject: format!("Printer {i} is on fire"),
        message: format!(
            "Ticket {i}: the printer on floor {} started smoking after the   morning job. \
             It smells of toner and   burnt paper; the paper tray is stuck and the display \
             shows error E{:03}. Please send someone before the afternoon shift.",
            i % 40,
            i % 997
        ),
    }];
    if !i.is_multiple_of(4) {
        events.push(Event::TicketTriaged);
    }
    if !i.is_multiple_of(5) {
        events.push(Event::AgentAssigned { agent: agent(i) });
    }
    if i.is_multiple_of(2) {
        events.push(Event::NoteAdded {
            text: format!("Called the customer back about ticket {i}; waiting for a photo."),
        });
    }
    if i % 4 == 3 {
        events.push(Event::TicketClosed);
    }
    events
}

fn metadata() -> Metadata {
    Metadata {
        actor: Some("ticket-bench".to_owned()),
        ..Metadata::default()
    }
}

/// Tickets `from..to`, their events interleaved step by step.
pub fn chunk(from: u64, to: u64, clock: &mut Clock) -> Chunk {
    chunk_with(from, to, clock, CUSTOMERS)
}

/// [`chunk`] with `customers` customers.
pub fn chunk_with(from: u64, to: u64, clock: &mut Clock, customers: u64) -> Chunk {
    let scripts: Vec<Vec<Event>> = (from..to).map(|i| script_with(i, customers)).collect();
    let mut ids = vec![Uuid::nil(); scripts.len()];
    let mut tickets: Vec<Option<FinalTicket>> = vec![None; scripts.len()];
    let mut events = Vec::with_capacity(scripts.iter().map(Vec::len).sum());
    let longest = scripts.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        for (k, script) in scripts.iter().enumerate() {
            let Some(event) = script.get(step) else {
                continue;
            };
            let at = clock.tick();
            if step == 0 {
                ids[k] = v7_at(at);
            }
            apply(&mut tickets[k], ids[k], event, at);
            let mut new = NewEvent::from_domain(event, at, metadata());
            new.event_id = v7_at(at);
            events.push((ids[k], new));
        }
    }
    Chunk {
        events,
        tickets: tickets.into_iter().flatten().collect(),
    }
}

/// A time-ordered id whose time part is `at` (random below it).
fn v7_at(at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        seconds,
        at.timestamp_subsec_nanos(),
    ))
}

/// The end state, folded by hand (the naive design keeps no events).
fn apply(ticket: &mut Option<FinalTicket>, id: Uuid, event: &Event, at: DateTime<Utc>) {
    if let Event::TicketOpened {
        customer,
        subject,
        message,
    } = event
    {
        *ticket = Some(FinalTicket {
            id,
            customer: customer.clone(),
            subject: subject.clone(),
            message: message.clone(),
            status: "open",
            agent: None,
            notes: Vec::new(),
            created_at: at,
            updated_at: at,
        });
        return;
    }
    let Some(ticket) = ticket else {
        return;
    };
    ticket.updated_at = at;
    match event {
        Event::TicketTriaged => ticket.status = "triaged",
        Event::TicketReopened => ticket.status = "open",
        Event::TicketClosed => ticket.status = "closed",
        Event::AgentAssigned { agent } => ticket.agent = Some(agent.clone()),
        Event::AgentUnassigned => ticket.agent = None,
        Event::NoteAdded { text } => ticket.notes.push((text.clone(), at)),
        Event::TicketOpened { .. } | Event::CustomerErased { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_interleave_and_end_in_a_mix_of_states() {
        let mut clock = Clock::default();
        let chunk = chunk(0, 8, &mut clock);
        let per_ticket: usize = (0..8).map(|i| script(i).len()).sum();
        assert_eq!(chunk.events.len(), per_ticket);
        assert_eq!(chunk.tickets.len(), 8);
        // The first 8 events open the 8 tickets.
        assert!(
            chunk.events[..8]
                .iter()
                .all(|(_, e)| e.event_type == "TicketOpened")
        );
        // Times strictly increase in append order.
        assert!(
            chunk
                .events
                .windows(2)
                .all(|w| w[0].1.occurred_at < w[1].1.occurred_at)
        );
        let statuses: Vec<_> = chunk.tickets.iter().map(|t| t.status).collect();
        assert_eq!(
            statuses,
            [
                "open", "triaged", "triaged", "closed", "open", "triaged", "triaged", "closed"
            ]
        );
        assert_eq!(chunk.tickets[1].agent.as_deref(), Some("agent-01"));
        assert_eq!(chunk.tickets[2].notes.len(), 1);
    }

    #[test]
    fn a_sealed_seed_has_ten_tickets_per_customer_spread_out() {
        assert_eq!(customers_for(1_000_000), 100_000);
        assert_eq!(customers_for(79_190), 7_920);
        let customers = customers_for(100);
        let chunk = chunk_with(0, 100, &mut Clock::default(), customers);
        let mut seen: Vec<&str> = chunk.tickets.iter().map(|t| t.customer.as_str()).collect();
        // Neighbours belong to different customers.
        assert_ne!(seen[0], seen[1]);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as u64, customers);
    }
}
