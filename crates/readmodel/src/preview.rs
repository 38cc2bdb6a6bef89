//! The preview rule shared by the message and last-note previews.

/// The longest preview, in Unicode scalar values.
pub const PREVIEW_CHARS: usize = 100;

/// Collapses every whitespace run to one space and trims; a text longer than
/// [`PREVIEW_CHARS`] becomes its first 99 characters followed by `…`.
///
/// One pass that stops at the limit: every list row of a rebuild computes a
/// preview, and most messages are longer than one.
pub fn preview(text: &str) -> String {
    let mut shown = String::with_capacity(text.len().min(PREVIEW_CHARS * 2));
    let mut count = 0;
    for word in text.split_whitespace() {
        let space = (count > 0).then_some(' ');
        for c in space.into_iter().chain(word.chars()) {
            if count == PREVIEW_CHARS {
                // A character past the limit: the text is too long.
                shown.pop();
                shown.push('…');
                return shown;
            }
            shown.push(c);
            count += 1;
        }
    }
    shown
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

    /// The rule as first written: collapse everything, then cut.
    fn collapse_then_cut(text: &str) -> String {
        let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if collapsed.chars().count() <= PREVIEW_CHARS {
            return collapsed;
        }
        let mut cut: String = collapsed.chars().take(PREVIEW_CHARS - 1).collect();
        cut.push('…');
        cut
    }

    #[test]
    fn agrees_with_collapsing_then_cutting_around_the_limit() {
        let pieces = ["a", "ü", " ", "  ", "\n\t", "word", "é ", " x"];
        let mut checked = 0;
        for length in [0, 1, 50, 98, 99, 100, 101, 102, 150, 400] {
            for (offset, step) in [(0, 1), (1, 3), (2, 5), (3, 7)] {
                let mut text = String::new();
                let mut i = offset;
                while text.chars().count() < length {
                    text.push_str(pieces[i % pieces.len()]);
                    i += step;
                }
                assert_eq!(preview(&text), collapse_then_cut(&text), "{text:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 40);
    }

    #[test]
    fn counts_after_collapsing() {
        let text = format!("{}{}", "a ".repeat(50), " ".repeat(500));
        assert_eq!(preview(&text).chars().count(), 99, "50 a's and 49 spaces");
    }
}
