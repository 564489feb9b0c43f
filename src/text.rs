//! Text that came from someone else: how long a client's free text may be, how an
//! error message echoes it, and how a terminal shows it.
//!
//! * [`check_len`] bounds a free-text request field before any work is done with it.
//! * [`excerpt`] is the only way a message echoes client text: a short, escaped, quoted
//!   prefix with a marker when it was cut, so one rejection reason stays a few hundred
//!   bytes whatever the client sent (a 10,000-point reply stays far under the 4 MiB
//!   message limit).
//! * [`cut`] bounds free text the server keeps (a connector run's error): cut on a
//!   character boundary, with a marker that says how long the text was, so what is
//!   stored (and answered to every later reader) stays small and a reader still sees
//!   that something was left out.
//! * [`printable`] is the only way the command line prints text a server or another
//!   user supplied: control characters and bidirectional-text controls are shown
//!   escaped as `\u{1b}`, so nothing reaches the terminal raw and table columns stay
//!   aligned.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// Longest stream, category, user, team, token and organisation name, and any other
/// name a request looks something up by, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest stream description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// How many bytes of escaped text an [`excerpt`] shows at most.
pub const EXCERPT_BYTES: usize = 64;

/// A free-text request field longer than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {what} is {chars} characters long; at most {max} are allowed")]
pub struct TooLong {
    /// What the field is, as a sentence names it ("user name").
    pub what: &'static str,
    /// Its length in characters.
    pub chars: usize,
    /// The limit.
    pub max: usize,
}

/// Refuses `text` when it has more than `max` characters. Counting stops just past the
/// limit, so a field of megabytes costs no more than one of `max` characters.
pub fn check_len(what: &'static str, text: &str, max: usize) -> Result<(), TooLong> {
    // Every character is at least one byte: a text of at most `max` bytes fits.
    if text.len() <= max || text.chars().nth(max).is_none() {
        return Ok(());
    }
    Err(TooLong {
        what,
        chars: text.chars().count(),
        max,
    })
}

/// Client text as an error message quotes it: the text in double quotes, each
/// character escaped as Rust's `char::escape_debug` does (`"2026-W53"`, `"a\u{1b}b"`),
/// or, when its escaped form is longer than
/// [`EXCERPT_BYTES`], the start of it, `…` and the whole text's length:
/// `"2026-W4444…"… (102400 characters)`.
///
/// `Debug` and `Display` print the same, so `{0}` and `{0:?}` in an error's format
/// string both quote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The escaped text shown between the quotes.
    shown: String,
    /// The text's length in characters, when it was cut.
    cut: Option<usize>,
}

/// Refuses a name a request looks something up by (a user, team, category, token…)
/// when it is longer than any name can be, before the lookup.
pub fn check_name_len(what: &'static str, name: &str) -> Result<(), TooLong> {
    check_len(what, name, MAX_NAME_CHARS)
}

/// Quotes `text` for an error message, cut to [`EXCERPT_BYTES`] with a marker.
pub fn excerpt(text: &str) -> Excerpt {
    let mut shown = String::new();
    for (taken, c) in text.chars().enumerate() {
        let start = shown.len();
        // Escape like `{:?}`, quotes and backslashes included (and combining marks,
        // which `{:?}` leaves alone after the first character).
        write!(shown, "{}", c.escape_debug()).expect("writing to a String");
        if shown.len() > EXCERPT_BYTES {
            shown.truncate(start);
            let rest = text.chars().skip(taken).count();
            return Excerpt {
                shown,
                cut: Some(taken + rest),
            };
        }
    }
    Excerpt { shown, cut: None }
}

impl Excerpt {
    /// True when the text was longer than what is shown.
    pub fn is_cut(&self) -> bool {
        self.cut.is_some()
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.shown)?;
        match self.cut {
            Some(chars) => write!(f, "… ({chars} characters)"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

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

/// True for characters that must not reach a terminal raw: C0 controls (ESC, CR, LF,
/// TAB…), DEL, C1 controls, and the invisible characters that reorder or hide text
/// (bidirectional marks, embeddings, overrides and isolates, zero-width characters,
/// line and paragraph separators, the byte-order mark).
pub fn is_unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` as the command line prints it for people: each character that
/// [`is_unsafe_for_terminal`] is replaced by its escape `\u{…}` (ESC reads `\u{1b}`, a
/// newline `\u{a}`, U+202E `\u{202e}`), everything else is kept. Borrowed when nothing
/// needed escaping. JSON and CSV output do not use it: they carry the exact text.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_for_terminal(c) {
            write!(out, "{}", c.escape_unicode()).expect("writing to a String");
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

    #[test]
    fn a_short_text_is_quoted_whole() {
        assert_eq!(excerpt("2026-W53").to_string(), "\"2026-W53\"");
        assert_eq!(excerpt("a\u{1b}[2Jb").to_string(), "\"a\\u{1b}[2Jb\"");
        assert!(!excerpt("").is_cut());
    }

    #[test]
    fn a_long_text_is_cut_with_a_marker_and_its_length() {
        let long = "x".repeat(100_000);
        let shown = excerpt(&long).to_string();
        assert_eq!(
            shown,
            format!("\"{}\"… (100000 characters)", "x".repeat(64))
        );
    }

    #[test]
    fn escapes_count_towards_the_excerpt_budget() {
        let hostile = "\u{10ffff}".repeat(1000);
        let shown = excerpt(&hostile).to_string();
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("… (1000 characters)"), "{shown}");
    }

    #[test]
    fn names_are_bounded_in_characters_not_bytes() {
        assert!(check_len("user name", &"é".repeat(200), 200).is_ok());
        let err = check_len("user name", &"é".repeat(201), 200).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the user name is 201 characters long; at most 200 are allowed"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("plain café 中"), "plain café 中");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(
            printable("\u{1b}]0;owned\u{7}\u{9b}x\u{202e}gpj.exe\n"),
            "\\u{1b}]0;owned\\u{7}\\u{9b}x\\u{202e}gpj.exe\\u{a}"
        );
    }
}

/// Property tests: an excerpt is short whatever the text, and quotes short texts
/// whole, each character escaped; printable text holds no character unsafe for a terminal.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn an_excerpt_is_short_and_quotes_a_short_text_whole(text in any::<String>()) {
            let shown = excerpt(&text);
            prop_assert!(shown.to_string().len() <= EXCERPT_BYTES + 40, "{shown}");
            if !shown.is_cut() {
                let escaped: String = text.chars().flat_map(char::escape_debug).collect();
                prop_assert_eq!(shown.to_string(), format!("\"{escaped}\""));
            }
        }

        #[test]
        fn printable_text_has_no_character_unsafe_for_a_terminal(text in any::<String>()) {
            let shown = printable(&text);
            prop_assert!(!shown.chars().any(is_unsafe_for_terminal), "{shown}");
            if !text.chars().any(is_unsafe_for_terminal) {
                prop_assert_eq!(shown.as_ref(), text.as_str());
            }
        }
    }
}
