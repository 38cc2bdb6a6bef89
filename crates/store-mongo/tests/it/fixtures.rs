//! Events the tests append.

use domain::Event;
use eventstore::NewEvent;

pub fn opened(customer: &str) -> NewEvent {
    NewEvent::from(&Event::TicketOpened {
        customer: customer.to_owned(),
        subject: format!("{customer}: printer on fire"),
        message: "It is on fire.".to_owned(),
    })
}

pub fn note(text: &str) -> NewEvent {
    NewEvent::from(&Event::NoteAdded {
        text: text.to_owned(),
    })
}
