//! `gpusel list --watch`: the table redrawn in place every interval, like
//! `gpustat -i` and `watch`, until Ctrl-C.
//!
//! On a terminal it draws on the alternate screen with the cursor hidden,
//! and each frame overwrites the last from the top-left corner, clearing
//! only what is left of each line and below the last: the screen is never
//! blanked between frames, so nothing flickers. SIGINT, SIGTERM and SIGHUP
//! end the loop, and the cursor and the user's screen are given back before
//! gpusel exits, at once even while a frame waits on a hung nvidia-smi
//! (killed) or driver; Ctrl-Z gives them back before stopping, and `fg` takes the
//! screen again, as `less` and `top` do. Into a pipe, frames follow each other with a blank line
//! between and no escape sequences.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::failure::Failure;

/// The signal that asked the loop to stop, 0 while none has.
static STOP: AtomicI32 = AtomicI32::new(0);
/// Set by Ctrl-Z (SIGTSTP): the loop gives the screen back, then stops.
static SUSPEND: AtomicBool = AtomicBool::new(false);

/// Set while a frame is being taken: the provider may be waiting on a hung
/// nvidia-smi (or a hung driver) for as long as its timeout.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Whether the loop draws on the terminal's alternate screen.
static ON_SCREEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    // Async-signal-safe only: atomics, kill(2), write(2), _exit(2).
    STOP.store(signal, Ordering::SeqCst);
    if BUSY.load(Ordering::SeqCst) {
        // Between frames the loop sees STOP within a tick; in the middle of
        // one it could wait out a hung provider: end now, as at the end of
        // the loop (the children killed, the screen given back, status 0).
        gpusel_core::kill_child_groups();
        if ON_SCREEN.load(Ordering::SeqCst) {
            // SAFETY: write(2) of a static buffer to standard output.
            unsafe { nix::libc::write(1, LEAVE.as_ptr().cast(), LEAVE.len()) };
        }
        // SAFETY: _exit(2) ends the process at once, running nothing.
        unsafe { nix::libc::_exit(0) };
    }
}

extern "C" fn on_suspend(_: nix::libc::c_int) {
    SUSPEND.store(true, Ordering::SeqCst);
}

/// How often the loop looks for a signal or a resized terminal while it
/// waits for the next frame.
const TICK: Duration = Duration::from_millis(50);

const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// Gives the terminal back however the loop ends, errors included.
struct Screen {
    tty: bool,
}

impl Screen {
    fn enter(tty: bool) -> io::Result<Self> {
        if tty {
            write_all(ENTER)?;
        }
        Ok(Screen { tty })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.tty {
            let _ = write_all(LEAVE);
        }
    }
}

fn write_all(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Draws `frame(width)` every `interval` until a signal, on the terminal
/// when `tty`. `frame` gets the width to fit and returns the text of one
/// frame; a provider that fails for a moment is shown in the frame, not
/// fatal.
pub fn run(
    interval: Duration,
    tty: bool,
    width: impl Fn() -> Option<usize>,
    height: impl Fn() -> Option<usize>,
    mut frame: impl FnMut(Option<usize>) -> String,
) -> Result<(), Failure> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let suspend = SigAction::new(
        SigHandler::Handler(on_suspend),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for (signal, action) in [
        (Signal::SIGINT, &action),
        (Signal::SIGTERM, &action),
        (Signal::SIGHUP, &action),
        (Signal::SIGTSTP, &suspend),
    ] {
        // SAFETY: the handlers only store into an atomic.
        unsafe { sigaction(signal, action) }.map_err(|e| Failure::Output(io::Error::other(e)))?;
    }
    let output = |e: io::Error| match e.kind() {
        // The reader went away (`gpusel list --watch | head`): done.
        io::ErrorKind::BrokenPipe => None,
        _ => Some(Failure::Output(e)),
    };
    let _screen = match Screen::enter(tty) {
        Ok(screen) => screen,
        Err(e) => return output(e).map_or(Ok(()), Err),
    };
    ON_SCREEN.store(tty, Ordering::SeqCst);
    let mut first = true;
    while STOP.load(Ordering::SeqCst) == 0 {
        let cols = width();
        BUSY.store(true, Ordering::SeqCst);
        // A signal that came just before BUSY was set is seen here.
        if STOP.load(Ordering::SeqCst) != 0 {
            break;
        }
        let text = frame(cols);
        BUSY.store(false, Ordering::SeqCst);
        let drawn = if tty {
            draw(&text, height())
        } else {
            let sep = if first { "" } else { "\n" };
            write_all(&format!("{sep}{text}"))
        };
        first = false;
        if let Err(e) = drawn {
            return output(e).map_or(Ok(()), Err);
        }
        let next = Instant::now() + interval;
        while STOP.load(Ordering::SeqCst) == 0 && Instant::now() < next {
            std::thread::sleep(TICK.min(next.saturating_duration_since(Instant::now())));
            if SUSPEND.swap(false, Ordering::SeqCst) {
                if !tty {
                    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
                    continue;
                }
                if let Err(e) = suspend_screen() {
                    return output(e).map_or(Ok(()), Err);
                }
                // Continued (`fg`): draw again at once.
                break;
            }
            if tty && width() != cols {
                break;
            }
        }
    }
    Ok(())
}

/// Gives the screen and cursor back, stops as Ctrl-Z asked, and takes the
/// screen again once continued.
fn suspend_screen() -> io::Result<()> {
    write_all(LEAVE)?;
    // SIGSTOP, not SIGTSTP: the handler above would only catch it again.
    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    write_all(ENTER)
}

/// Writes one frame (see [`frame_bytes`]).
fn draw(text: &str, rows: Option<usize>) -> io::Result<()> {
    write_all(&frame_bytes(text, rows))
}

/// One frame from the top-left corner: each line overwrites the old one and
/// clears what is left of it, lines past the screen's height are left out
/// (printing them would scroll), and the rest of the screen is cleared. The
/// screen is never cleared as a whole, so nothing flickers.
fn frame_bytes(text: &str, rows: Option<usize>) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    out.push_str("\x1b[H");
    let lines: Vec<&str> = text.lines().collect();
    let shown = rows.map_or(lines.len(), |r| lines.len().min(r));
    for (i, line) in lines[..shown].iter().enumerate() {
        out.push_str(line);
        out.push_str("\x1b[K");
        if i + 1 < shown {
            out.push_str("\r\n");
        }
    }
    out.push_str("\x1b[J");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_overwrites_in_place() {
        let frame = frame_bytes("one\ntwo\n", Some(40));
        assert_eq!(frame, "\x1b[Hone\x1b[K\r\ntwo\x1b[K\x1b[J");
        assert!(
            !frame.contains("\x1b[2J"),
            "no whole-screen clear: it flickers"
        );
    }

    #[test]
    fn a_frame_never_scrolls_the_screen() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let frame = frame_bytes(&text, Some(10));
        assert_eq!(frame.matches("\r\n").count(), 9, "{frame:?}");
        assert!(frame.contains("line 9\x1b[K") && !frame.contains("line 10"));
    }
}
