//! Text from the driver or `/proc` (GPU names, process names, command lines,
//! user names) made safe for a terminal, and measured in terminal columns.
//!
//! Anyone on the machine chooses their process's name and arguments, so they
//! must not be able to move the cursor, clear the screen, retitle the window
//! or reorder text (bidi overrides) on the terminal of whoever runs
//! `gpusel list`. Every such character becomes a visible escape instead.

use std::fmt::Write;

use unicode_width::UnicodeWidthChar;

/// `text` with every control character, and every invisible formatting
/// character that can reorder or hide text, written as a visible escape:
/// `\e` for ESC, `\n`, `\r`, `\t`, `\xNN` for other C0/C1 controls and DEL,
/// `\u{NNNN}` for the rest. Invalid UTF-8 has already become U+FFFD where the
/// text was read (`from_utf8_lossy`), which is shown as is.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\x1b' => out.push_str("\\e"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` [`clean`] line by line, its line breaks kept: for messages that
/// carry text from outside (a remote agent's answer, a parser's quote of
/// it) but are meant to span lines.
pub fn clean_lines(text: &str) -> String {
    text.split('\n').map(clean).collect::<Vec<_>>().join("\n")
}

/// Unicode format characters (category Cf and the like) that change how
/// the text around them is shown: bidi embeddings, overrides and isolates,
/// zero-width joiners and spaces, the BOM, interlinear annotations.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Terminal columns `text` takes (East Asian wide characters take two,
/// combining marks none). `text` must already be [`clean`].
pub fn width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text` cut to at most `columns` terminal columns, with `…` where it was
/// cut. A wide character that would straddle the edge is left out whole.
pub fn fit(text: &str, columns: usize) -> String {
    if width(text) <= columns {
        return text.to_string();
    }
    if columns == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > columns - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_become_visible() {
        assert_eq!(clean("\x1b[2Jevil\n"), "\\e[2Jevil\\n");
        assert_eq!(clean("py\x07thon\x7f"), "py\\x07thon\\x7f");
        assert_eq!(clean("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(clean("txt\u{202e}fdp.exe"), "txt\\u{202e}fdp.exe");
        assert_eq!(clean("naïve 日本 \u{fffd}"), "naïve 日本 \u{fffd}");
    }

    #[test]
    fn fit_counts_terminal_columns() {
        assert_eq!(width("日本語"), 6);
        assert_eq!(fit("日本語", 6), "日本語");
        assert_eq!(fit("日本語", 5), "日本…");
        assert_eq!(fit("日本語", 4), "日…");
        assert_eq!(fit("python", 4), "pyt…");
        assert_eq!(fit("python", 1), "…");
        assert_eq!(fit("python", 0), "");
    }

    proptest! {
        #[test]
        fn cleaned_text_has_no_control_or_format_character(s in any::<String>()) {
            let c = clean(&s);
            prop_assert!(!c.chars().any(|c| c.is_control() || is_invisible_format(c)), "{c:?}");
        }

        #[test]
        fn cleaned_text_keeps_printable_text(s in "[a-zA-Z0-9 ./:_-]{0,40}") {
            prop_assert_eq!(clean(&s), s);
        }

        #[test]
        fn fit_never_exceeds_the_width(s in any::<String>(), cols in 0usize..60) {
            let c = clean(&s);
            let f = fit(&c, cols);
            prop_assert!(width(&f) <= cols, "{f:?} in {cols}");
            if width(&c) <= cols {
                prop_assert_eq!(f, c);
            }
        }

        #[test]
        fn bytes_from_proc_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let c = clean(&String::from_utf8_lossy(&bytes));
            prop_assert!(!c.contains('\x1b') && !c.chars().any(char::is_control));
        }
    }
}
