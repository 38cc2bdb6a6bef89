//! Field rules for command input. Each check names the field and the rule it
//! broke, so the HTTP layer can report both without knowing the rules.

/// Length limits, counted in Unicode scalar values after trimming.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub customer: usize,
    pub subject: usize,
    pub message: usize,
    pub note: usize,
    pub agent: usize,
}

pub const LIMITS: Limits = Limits {
    customer: 200,
    subject: 200,
    message: 10_000,
    note: 5_000,
    agent: 100,
};

/// A field broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The JSON field name, as the client sent it.
    pub field: &'static str,
    /// The rule, in words a client can act on.
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }
}

fn trimmed_length(field: &'static str, value: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if length == 0 {
        return Err(FieldError::new(field, "must not be empty or blank"));
    }
    if length > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters (got {length})"),
        ));
    }
    Ok(trimmed.to_owned())
}

pub(crate) fn customer(value: &str) -> Result<String, FieldError> {
    trimmed_length("customer", value, LIMITS.customer)
}

pub(crate) fn subject(value: &str) -> Result<String, FieldError> {
    trimmed_length("subject", value, LIMITS.subject)
}

/// Messages and notes keep their inner layout (line breaks); only the ends are
/// trimmed, as for every other field.
pub(crate) fn message(value: &str) -> Result<String, FieldError> {
    trimmed_length("message", value, LIMITS.message)
}

/// Most bytes of UTF-8 in one note. With [`crate::MAX_NOTES`] notes per
/// ticket it keeps a ticket's detail document (1,000 notes, each with its
/// time and author) under MongoDB's 16 MiB document limit whatever the
/// script: 5,000 characters of most scripts fit (3 bytes each), text written
/// wholly in 4-byte characters (emoji) fits 3,750.
pub const MAX_NOTE_BYTES: usize = 15_000;

pub(crate) fn note(value: &str) -> Result<String, FieldError> {
    let note = trimmed_length("note", value, LIMITS.note)?;
    if note.len() > MAX_NOTE_BYTES {
        return Err(FieldError::new(
            "note",
            format!(
                "must be at most {MAX_NOTE_BYTES} bytes of UTF-8 (got {})",
                note.len()
            ),
        ));
    }
    Ok(note)
}

pub(crate) fn agent(value: &str) -> Result<String, FieldError> {
    trimmed_length("agent", value, LIMITS.agent)
}
