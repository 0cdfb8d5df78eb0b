//! Splitting the CSV that `nvidia-smi --format=csv,noheader,nounits` prints.
//!
//! nvidia-smi separates fields with `", "` and does not quote: a process or
//! GPU name holding a comma yields more fields than were asked for. So a row
//! is cut into fields (honouring double quotes, should a driver ever add
//! them), and surplus fields are folded back into the one column that can
//! hold free text, from the raw line so the name keeps its own spacing.
//! Nothing here can panic: every index is checked.

/// The fields of one line, or `None` when the line has fewer fields than
/// `expected` (a warning line, a truncated row).
///
/// `free` is the column that absorbs surplus fields (the name column).
/// Every field is trimmed and unquoted.
pub fn split_row(line: &str, expected: usize, free: usize) -> Option<Vec<String>> {
    let spans = field_spans(line);
    if spans.len() < expected || free >= expected {
        return None;
    }
    let extra = spans.len() - expected;
    let mut out = Vec::with_capacity(expected);
    for (i, &(start, end)) in spans.iter().enumerate() {
        if i < free || i > free + extra {
            out.push(clean(line.get(start..end)?));
        } else if i == free {
            let last_end = spans.get(free + extra)?.1;
            out.push(clean(line.get(start..last_end)?));
        }
    }
    Some(out)
}

/// Byte ranges of the fields of `line`, separated by commas outside double
/// quotes. The ranges exclude the separating commas.
fn field_spans(line: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                spans.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
    }
    spans.push((start, line.len()));
    spans
}

/// Trims a field and, when it is wholly in double quotes, removes them and
/// turns `""` back into `"`.
fn clean(field: &str) -> String {
    let t = field.trim();
    match t
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => inner.replace("\"\"", "\""),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(line: &str, expected: usize, free: usize) -> Option<Vec<String>> {
        split_row(line, expected, free)
    }

    #[test]
    fn plain_row_with_nvidia_smi_spacing() {
        assert_eq!(
            row("11327, /root/tools/memhog, 2566, GPU-0", 4, 1).unwrap(),
            ["11327", "/root/tools/memhog", "2566", "GPU-0"]
        );
    }

    #[test]
    fn extra_spaces_are_trimmed() {
        assert_eq!(
            row("  1 ,\tpython   ,  10  ,GPU-1  ", 4, 1).unwrap(),
            ["1", "python", "10", "GPU-1"]
        );
    }

    #[test]
    fn unquoted_commas_stay_in_the_free_column() {
        assert_eq!(
            row("7, my, odd,  name, 100, GPU-7", 4, 1).unwrap(),
            ["7", "my, odd,  name", "100", "GPU-7"]
        );
        assert_eq!(
            row("0, GPU-a, Tesla, v2, 1, 2", 5, 2).unwrap(),
            ["0", "GPU-a", "Tesla, v2", "1", "2"]
        );
    }

    #[test]
    fn quoted_names_with_commas_and_quotes() {
        assert_eq!(
            row(r#"3, "train, ""big"" run", 5, GPU-3"#, 4, 1).unwrap(),
            ["3", r#"train, "big" run"#, "5", "GPU-3"]
        );
    }

    #[test]
    fn missing_columns_and_warning_lines_are_not_rows() {
        assert_eq!(row("1, python, 10", 4, 1), None);
        assert_eq!(
            row("WARNING: infoROM is corrupted at gpu 0000:17:00.0", 4, 1),
            None
        );
        assert_eq!(row("", 4, 1), None);
        assert_eq!(row("a, b", 2, 2), None, "free column out of range");
    }

    #[test]
    fn unbalanced_quote_does_not_panic() {
        assert_eq!(row(r#"1, "python, 10, GPU-1"#, 4, 1), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_keeps_the_width(line in ".*", expected in 0usize..20, free in 0usize..20) {
            if let Some(fields) = split_row(&line, expected, free) {
                prop_assert_eq!(fields.len(), expected);
            }
        }
    }
}
