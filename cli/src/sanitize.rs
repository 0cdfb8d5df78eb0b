//! Text from the driver or `/proc` (GPU names, process names, command lines,
//! user names) made safe for a terminal ([`clean`], from
//! [`gpusel_core::sanitize`], which the agent's pages use too), and measured
//! in terminal columns.

use unicode_width::UnicodeWidthChar;

pub use gpusel_core::sanitize::{clean, clean_lines};

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
        fn fit_never_exceeds_the_width(s in any::<String>(), cols in 0usize..60) {
            let c = clean(&s);
            let f = fit(&c, cols);
            prop_assert!(width(&f) <= cols, "{f:?} in {cols}");
            if width(&c) <= cols {
                prop_assert_eq!(f, c);
            }
        }
    }
}
