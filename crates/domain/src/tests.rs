//! The rules in given / when / then form, plus the laws of the fold.

use proptest::prelude::*;

use crate::*;

/// A tiny given/when/then harness: no database, no clock.
struct Given(Vec<Event>);

fn given(events: impl IntoIterator<Item = Event>) -> Given {
    Given(events.into_iter().collect())
}

struct When(Result<Vec<Event>, DomainError>);

impl Given {
    fn when(self, command: Command) -> When {
        When(decide(&fold(&self.0), command))
    }
}

impl When {
    #[track_caller]
    fn then(self, expected: impl IntoIterator<Item = Event>) {
        assert_eq!(self.0, Ok(expected.into_iter().collect::<Vec<_>>()));
    }

    #[track_caller]
    fn then_err(self, expected: DomainError) {
        assert_eq!(self.0, Err(expected));
    }
}

fn opened() -> Event {
    Event::TicketOpened {
        customer: "ACME".into(),
        subject: "Printer on fire".into(),
        message: "It is on fire.".into(),
    }
}

fn open_command() -> Command {
    Command::Open(OpenTicket::new(" ACME ", "Printer on fire", "It is on fire.").unwrap())
}

fn change(status: Option<Status>, agent: Option<Option<&str>>, note: Option<&str>) -> Command {
    Command::Change(ChangeTicket::new(status, agent, note).unwrap())
}

fn status(s: Status) -> Command {
    change(Some(s), None, None)
}

#[test]
fn opening_a_new_ticket_records_it_with_trimmed_fields() {
    given([]).when(open_command()).then([opened()]);
}

#[test]
fn opening_an_existing_ticket_is_refused() {
    given([opened()])
        .when(open_command())
        .then_err(DomainError::AlreadyExists);
}

#[test]
fn changing_a_missing_ticket_is_not_found() {
    given([])
        .when(status(Status::Triaged))
        .then_err(DomainError::NotFound);
}

#[test]
fn open_ticket_can_be_triaged_closed_or_left_open() {
    given([opened()])
        .when(status(Status::Triaged))
        .then([Event::TicketTriaged]);
    given([opened()])
        .when(status(Status::Closed))
        .then([Event::TicketClosed]);
    given([opened()]).when(status(Status::Open)).then([]);
}

#[test]
fn triaged_ticket_can_be_reopened_or_closed() {
    given([opened(), Event::TicketTriaged])
        .when(status(Status::Open))
        .then([Event::TicketReopened]);
    given([opened(), Event::TicketTriaged])
        .when(status(Status::Closed))
        .then([Event::TicketClosed]);
}

#[test]
fn setting_the_current_status_appends_nothing() {
    given([opened(), Event::TicketTriaged])
        .when(status(Status::Triaged))
        .then([]);
    given([opened(), Event::TicketClosed])
        .when(status(Status::Closed))
        .then([]);
}

#[test]
fn closed_is_final_for_status() {
    for requested in [Status::Open, Status::Triaged] {
        given([opened(), Event::TicketClosed])
            .when(status(requested))
            .then_err(DomainError::ClosedIsFinal { requested });
    }
}

#[test]
fn closed_ticket_still_takes_notes_and_agents() {
    given([opened(), Event::TicketClosed])
        .when(change(None, Some(Some("ana")), Some("post mortem")))
        .then([
            Event::AgentAssigned {
                agent: "ana".into(),
            },
            Event::NoteAdded {
                text: "post mortem".into(),
            },
        ]);
}

#[test]
fn a_refused_status_refuses_the_whole_command() {
    given([opened(), Event::TicketClosed])
        .when(change(Some(Status::Open), Some(Some("ana")), Some("x")))
        .then_err(DomainError::ClosedIsFinal {
            requested: Status::Open,
        });
}

#[test]
fn agent_assignment_changes_only_when_different() {
    let assigned = Event::AgentAssigned {
        agent: "ana".into(),
    };
    given([opened()])
        .when(change(None, Some(Some("ana")), None))
        .then([assigned.clone()]);
    given([opened(), assigned.clone()])
        .when(change(None, Some(Some("ana")), None))
        .then([]);
    given([opened(), assigned.clone()])
        .when(change(None, Some(Some("bo")), None))
        .then([Event::AgentAssigned { agent: "bo".into() }]);
    given([opened(), assigned])
        .when(change(None, Some(None), None))
        .then([Event::AgentUnassigned]);
    given([opened()])
        .when(change(None, Some(None), None))
        .then([]);
}

#[test]
fn one_change_can_carry_status_agent_and_note_in_that_order() {
    given([opened()])
        .when(change(
            Some(Status::Triaged),
            Some(Some("ana")),
            Some("on it"),
        ))
        .then([
            Event::TicketTriaged,
            Event::AgentAssigned {
                agent: "ana".into(),
            },
            Event::NoteAdded {
                text: "on it".into(),
            },
        ]);
}

#[test]
fn every_note_is_recorded_even_when_repeated() {
    let note = Event::NoteAdded {
        text: "ping".into(),
    };
    given([opened(), note.clone()])
        .when(change(None, None, Some("ping")))
        .then([note]);
}

/// A ticket's history with `count` notes.
fn with_notes(count: usize) -> Vec<Event> {
    let notes = (0..count).map(|i| Event::NoteAdded {
        text: format!("note {i}"),
    });
    std::iter::once(opened()).chain(notes).collect()
}

#[test]
fn notes_are_counted_by_the_fold() {
    let TicketState::Exists(ticket) = fold(&with_notes(3)) else {
        panic!("an opened ticket exists");
    };
    assert_eq!(ticket.notes, 3);
}

#[test]
fn a_ticket_takes_notes_up_to_the_cap_and_refuses_the_next() {
    assert_eq!(MAX_NOTES, 1_000);
    // Each note decided on the state folded so far, as the write side does.
    let mut state = fold(&[opened()]);
    for i in 0..MAX_NOTES {
        let events = decide(&state, change(None, None, Some(&format!("note {i}"))))
            .unwrap_or_else(|error| panic!("note {} refused: {error}", i + 1));
        assert_eq!(events.len(), 1);
        state = events.iter().fold(state, evolve);
    }
    assert_eq!(state, fold(&with_notes(MAX_NOTES)));
    let refused = decide(&state, change(None, None, Some("one too many"))).unwrap_err();
    assert_eq!(refused, DomainError::TooManyNotes { max: MAX_NOTES });
    assert_eq!(refused.field(), Some("note"));
    assert_eq!(refused.to_string(), "a ticket holds at most 1000 notes");
}

#[test]
fn a_refused_note_refuses_the_whole_command() {
    given(with_notes(MAX_NOTES))
        .when(change(Some(Status::Closed), Some(Some("ana")), Some("x")))
        .then_err(DomainError::TooManyNotes { max: MAX_NOTES });
    // Without a note, the full ticket still changes.
    given(with_notes(MAX_NOTES))
        .when(change(Some(Status::Closed), Some(Some("ana")), None))
        .then([
            Event::TicketClosed,
            Event::AgentAssigned {
                agent: "ana".into(),
            },
        ]);
    given(with_notes(MAX_NOTES - 1))
        .when(change(None, None, Some("the last one")))
        .then([Event::NoteAdded {
            text: "the last one".into(),
        }]);
}

#[test]
fn field_rules_name_the_field() {
    let err = OpenTicket::new("   ", "s", "m").unwrap_err();
    assert_eq!(err.field, "customer");
    let err = OpenTicket::new("c", &"s".repeat(201), "m").unwrap_err();
    assert_eq!(err.field, "subject");
    assert!(err.rule.contains("at most 200"), "{}", err.rule);
    assert!(
        OpenTicket::new("c", &"é".repeat(200), "m").is_ok(),
        "limits count characters, not bytes"
    );
    let err = OpenTicket::new("c", "s", &"m".repeat(10_001)).unwrap_err();
    assert_eq!(err.field, "message");
    let err = ChangeTicket::new(None, None, Some(" \n\t ")).unwrap_err();
    assert_eq!(err.field, "note");
    let err = ChangeTicket::new(None, Some(Some(&"a".repeat(101))), None).unwrap_err();
    assert_eq!(err.field, "agent");
    let err = ChangeTicket::new(None, None, None).unwrap_err();
    assert_eq!(err.field, "body");
}

#[test]
fn status_parses_only_its_three_names() {
    for s in Status::ALL {
        assert_eq!(s.as_str().parse::<Status>(), Ok(s));
    }
    assert!("Closed".parse::<Status>().is_err());
}

#[test]
fn events_serialise_with_their_type_name() {
    for event in [
        opened(),
        Event::TicketClosed,
        Event::NoteAdded { text: "x".into() },
    ] {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.type_name());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

fn arbitrary_change() -> impl Strategy<Value = Command> {
    let status = prop::option::of(prop::sample::select(Status::ALL.to_vec()));
    let agent = prop::option::of(prop::option::of(prop::sample::select(vec!["ana", "bo"])));
    let note = prop::option::of(Just("note"));
    (status, agent, note)
        .prop_filter("at least one field", |(s, a, n)| {
            s.is_some() || a.is_some() || n.is_some()
        })
        .prop_map(|(s, a, n)| change(s, a, n))
}

/// Runs a random sequence of commands and keeps the accepted events.
fn history(commands: Vec<Command>) -> Vec<Event> {
    let mut events = vec![opened()];
    for command in commands {
        if let Ok(new) = decide(&fold(&events), command) {
            events.extend(new);
        }
    }
    events
}

proptest! {
    #[test]
    fn folding_in_any_chunking_gives_the_same_state(
        commands in prop::collection::vec(arbitrary_change(), 0..30),
        cut in 0usize..100,
    ) {
        let events = history(commands);
        let cut = cut % (events.len() + 1);
        let (head, tail) = events.split_at(cut);
        let resumed = tail.iter().fold(fold(head), evolve);
        prop_assert_eq!(resumed, fold(&events));
    }

    #[test]
    fn closed_stays_closed(commands in prop::collection::vec(arbitrary_change(), 0..30)) {
        let events = history(commands);
        let mut seen_closed = false;
        for event in &events {
            let changes_status = matches!(
                event,
                Event::TicketTriaged | Event::TicketReopened | Event::TicketClosed
            );
            prop_assert!(!(seen_closed && changes_status), "status changed after close: {:?}", event);
            seen_closed |= *event == Event::TicketClosed;
        }
    }

    #[test]
    fn deciding_twice_is_idempotent_for_status_and_agent(
        commands in prop::collection::vec(arbitrary_change(), 0..20),
        s in prop::sample::select(Status::ALL.to_vec()),
    ) {
        let mut events = history(commands);
        let command = change(Some(s), Some(Some("ana")), None);
        if let Ok(first) = decide(&fold(&events), command.clone()) {
            events.extend(first);
            prop_assert_eq!(decide(&fold(&events), command), Ok(vec![]));
        }
    }
}

#[test]
fn a_note_is_held_to_its_bytes_as_well_as_its_characters() {
    // 5,000 three-byte characters: within both limits.
    let cjk = "字".repeat(5_000);
    assert!(ChangeTicket::new(None, None, Some(&cjk)).is_ok());
    // 3,751 four-byte characters: within the character limit, past the bytes.
    let emoji = "🎫".repeat(crate::MAX_NOTE_BYTES / 4 + 1);
    let error = ChangeTicket::new(None, None, Some(&emoji)).expect_err("too many bytes");
    assert_eq!(error.field, "note");
    assert!(error.rule.contains("bytes"), "{error}");
    let fits = "🎫".repeat(crate::MAX_NOTE_BYTES / 4);
    assert!(ChangeTicket::new(None, None, Some(&fits)).is_ok());
}
