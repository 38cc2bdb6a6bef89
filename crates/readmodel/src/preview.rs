//! The preview rule shared by the message and last-note previews.

/// The longest preview, in Unicode scalar values.
pub const PREVIEW_CHARS: usize = 100;

/// Collapses every whitespace run to one space and trims; a text longer than
/// [`PREVIEW_CHARS`] becomes its first 99 characters followed by `…`.
pub fn preview(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= PREVIEW_CHARS {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(PREVIEW_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_whitespace_runs_and_trims() {
        assert_eq!(preview("  a \n\n b\t\tc  "), "a b c");
    }

    #[test]
    fn keeps_texts_of_exactly_the_limit() {
        let text = "é".repeat(PREVIEW_CHARS);
        assert_eq!(preview(&text), text);
    }

    #[test]
    fn cuts_longer_texts_to_99_characters_and_an_ellipsis() {
        let text = "ü".repeat(PREVIEW_CHARS + 1);
        let cut = preview(&text);
        assert_eq!(cut.chars().count(), PREVIEW_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().filter(|c| *c == 'ü').count(), 99);
    }

    #[test]
    fn counts_after_collapsing() {
        let text = format!("{}{}", "a ".repeat(50), " ".repeat(500));
        assert_eq!(preview(&text).chars().count(), 99, "50 a's and 49 spaces");
    }
}
