//! Writing to stdout without panicking on a closed pipe (`gpusel list | head`),
//! and to stderr without ever failing: a message that cannot be shown must
//! not stop the job.

use std::io::{self, Write};

use crate::failure::Failure;

/// Writes `text` to stdout. A reader that went away is not an error.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::Output(e)),
        _ => Ok(()),
    }
}

/// Writes `value` as pretty JSON and a newline to stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), Failure> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| Failure::Output(io::Error::other(e)))?;
    text.push('\n');
    print(&text)
}

/// Set once a `--json` run has printed its error object.
static JSON_ERROR_PRINTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// For a failed `--json` run: one JSON object on stdout with an `error` key
/// (`kind`, `message`), plus `verdicts` (every device's reasons) when the
/// selection got that far, so that a script reading stdout always gets an
/// object. Printed once; the message also goes to stderr as usual.
pub fn print_json_error(failure: &Failure, verdicts: Option<&[gpusel_core::Verdict]>) {
    use std::sync::atomic::Ordering;
    if JSON_ERROR_PRINTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut object = serde_json::json!({
        "schema_version": gpusel_core::SCHEMA_VERSION,
        "error": { "kind": failure.kind(), "message": failure.to_string() },
    });
    if let Some(verdicts) = verdicts {
        object["verdicts"] = serde_json::to_value(verdicts).unwrap_or_default();
    }
    let _ = print_json(&object);
}

/// Writes one `gpusel: ...` line (or block) to stderr. Error text may quote
/// what a remote agent or a snapshot file sent (serde quotes unknown values
/// raw), so control characters are shown, never sent to the terminal.
pub fn eprint_line(prefix: &str, text: &str) {
    let text = crate::sanitize::clean_lines(text);
    let _ = writeln!(io::stderr().lock(), "gpusel: {prefix}{text}");
}

/// Warns that `CUDA_VISIBLE_DEVICES` names devices this machine lacks or
/// cannot parse, quoting the value as set; nothing when it is fine.
pub fn warn_visible(visible: &gpusel_core::Visible) {
    if let Some(problem) = visible.warning() {
        eprint_line(
            "warning: ",
            &format!(
                "CUDA_VISIBLE_DEVICES='{}': {problem}",
                visible.value.as_deref().unwrap_or_default()
            ),
        );
    }
}

/// Standard error for the log (tracing): a write that fails (a reader that
/// went away, a full disk) is dropped, never reported. tracing
/// reports a failed write with `eprintln!`, which panics when stderr
/// itself fails, so that `gpusel -vv -- CMD` with a closed stderr pipe never ran CMD.
/// (A descriptor closed at start, `2>&-`, is /dev/null: std opens it.)
pub struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(io::stderr().write(buf).unwrap_or(buf.len()))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let _ = io::stderr().write_all(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// `rows` (the titles first) as columns two spaces apart, each as wide as
/// its widest cell, the last one unpadded, trailing blanks trimmed. Padded
/// by hand: a width from the data (a 64 KiB UUID from a snapshot file or a
/// remote agent, another user's ticket) is past what `{:<w$}` accepts
/// (u16), and formatting would panic.
pub fn columns<R: AsRef<[String]>>(rows: &[R]) -> String {
    let count = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.as_ref().get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
