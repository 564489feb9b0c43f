//! Free text that clients and runners send, bounded before the server keeps it: cut on
//! a character boundary, with a marker that says how long the text was, so what is
//! stored (and answered to every later reader) stays small and a reader still sees that
//! something was left out.

use std::borrow::Cow;

/// `text` in at most `max_bytes` bytes, marker included: a longer text keeps as many
/// whole characters as fit before `… [cut: N bytes in all]`. `max_bytes` must leave
/// room for the marker (under 50 bytes).
pub fn cut(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let marker = format!("… [cut: {} bytes in all]", text.len());
    let mut end = max_bytes.saturating_sub(marker.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{marker}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_text_is_kept_as_it_is() {
        assert!(matches!(cut("disk full", 100), Cow::Borrowed("disk full")));
        assert_eq!(cut(&"x".repeat(100), 100), "x".repeat(100));
    }

    #[test]
    fn a_long_text_is_cut_to_the_limit_with_a_marker_naming_its_length() {
        let long = "x".repeat(5_242_880);
        let kept = cut(&long, 4_096);
        assert_eq!(kept.len(), 4_096);
        assert!(kept.ends_with("x… [cut: 5242880 bytes in all]"), "{kept}");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: the cut falls inside one whatever the marker's length.
        let text = "é".repeat(1_000);
        for max in 60..70 {
            let kept = cut(&text, max);
            assert!(kept.len() <= max, "{max}: {kept}");
            assert!(kept.starts_with('é') && kept.ends_with("[cut: 2000 bytes in all]"));
        }
    }
}
