//! ticketd SIGKILLed again and again under HTTP write load (issue: faults).
