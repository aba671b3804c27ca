//! Showing untrusted text on a terminal.
//!
//! Everything in a finding is attacker-influenced (a user name, a tag, a
//! finding type), and so is much of what AWS returns about the resources a
//! finding names. Printed raw, a newline forges extra lines in a plan or an
//! approval prompt, an ANSI escape recolours or rewrites the screen, and a
//! bidi override makes `…exe.txt` read as `…txt.exe`. [`escape`] is the one
//! function every text rendering passes such text through: it keeps ordinary
//! text (any script, emoji, spaces) as it is and writes every character that
//! can move the cursor, change the terminal's state or reorder what is shown
//! as a visible escape (`\n`, `\u{1b}`, `\u{202e}`).

use std::borrow::Cow;

/// `text` with every control, bidi and invisible formatting character written
/// as a visible escape, so it stays on one line and shows what it holds.
///
/// Borrowed when there is nothing to escape (the common case). The result
/// never holds a character [`needs_escape`] flags, so escaping twice changes
/// nothing.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most [`PREVIEW_CHARS`] characters of `text`, escaped and quoted, so an
/// error about a hostile or huge value stays one readable line.
pub fn preview(text: &str) -> String {
    let cut = match text.char_indices().nth(PREVIEW_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    };
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("\"{}\"{more}", escape(cut))
}

/// How much of a value an error message shows.
pub const PREVIEW_CHARS: usize = 80;

/// Characters a terminal acts on rather than shows, or that reorder or hide
/// what it shows: C0 and C1 controls and DEL (newline, carriage return, ESC,
/// the 8-bit CSI), the Unicode bidi embeddings, overrides, isolates and marks,
/// line and paragraph separators, and zero-width characters.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'            // Arabic letter mark
            | '\u{180e}'          // Mongolian vowel separator
            | '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{206a}'..='\u{206f}' // deprecated format characters
            | '\u{feff}'          // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}' // interlinear annotations
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in [
            "i-0123456789abcdef0",
            "Jörg Müller",
            "日本語 ユーザー",
            "a b\\c",
            "",
        ] {
            assert!(matches!(escape(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn controls_and_bidi_are_shown_escaped() {
        assert_eq!(escape("bob\nmallory"), "bob\\nmallory");
        assert_eq!(escape("a\r\tb"), "a\\r\\tb");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("x\u{9b}2J"), "x\\u{9b}2J");
        assert_eq!(escape("\u{7f}"), "\\u{7f}");
        assert_eq!(escape("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(escape("zero\u{200b}width"), "zero\\u{200b}width");
        assert_eq!(escape("line\u{2028}sep"), "line\\u{2028}sep");
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = escape("a\nb\u{1b}c\u{202e}").into_owned();
        assert_eq!(escape(&once), once);
        assert!(!once.chars().any(needs_escape));
    }

    #[test]
    fn preview_is_quoted_short_and_escaped() {
        assert_eq!(preview("i-0123/../../x"), "\"i-0123/../../x\"");
        assert_eq!(preview("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        let shown = preview(&long);
        assert_eq!(shown, format!("\"{}\"…", "x".repeat(PREVIEW_CHARS)));
    }
}
