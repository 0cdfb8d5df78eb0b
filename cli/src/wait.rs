//! What `--wait` shows while it waits: a live status line when stderr is a
//! terminal, plain log lines otherwise (a batch log should not fill up with
//! one line per poll).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use gpusel_core::{ProviderError, Reason, Verdict};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::out;

/// How often a plain log line repeats while nothing changes.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The waiting display; does nothing when not waiting.
pub struct Status {
    waiting: bool,
    count: gpusel_core::Count,
    interval: Duration,
    bar: Option<ProgressBar>,
    last_log: Option<(Instant, String)>,
}

impl Status {
    /// A display for a wait for `count` devices, polled every `interval`.
    pub fn new(waiting: bool, count: gpusel_core::Count, interval: Duration) -> Self {
        Status {
            waiting,
            count,
            interval,
            bar: None,
            last_log: None,
        }
    }

    /// Shows why the request cannot be met yet, after `waited`.
    pub fn update(&mut self, waited: Duration, verdicts: &[Verdict]) {
        if !self.waiting {
            return;
        }
        let reasons: Vec<String> = verdicts
            .iter()
            // Only what can change while waiting: a GPU the request rules
            // out for good would only hide the ones worth watching.
            .filter(|v| {
                !v.reasons.is_empty()
                    && !v.reasons.iter().any(|r| {
                        matches!(
                            r,
                            Reason::HiddenByCudaVisibleDevices
                                | Reason::NotRequested
                                | Reason::Excluded
                                | Reason::Banned { .. }
                                | Reason::NameMismatch { .. }
                        )
                    })
            })
            .map(|v| format!("  {v}"))
            .collect();
        self.show(waited, reasons.join("\n"));
    }

    /// Shows that the provider failed at the last try, `failures` tries in
    /// a row of the `limit` that end the wait. Always logged: a failure is
    /// rare, and worth seeing in a batch log.
    pub fn provider_failed(
        &mut self,
        waited: Duration,
        error: &ProviderError,
        failures: usize,
        limit: usize,
    ) {
        if !self.waiting {
            return;
        }
        let text = format!(
            "  the provider failed ({failures} of {limit} tries in a row end the wait; trying again in {}): {error}",
            humantime::format_duration(self.interval)
        );
        // Logged now, and the reasons again once it recovers.
        self.last_log = None;
        self.show(waited, text);
        self.last_log = None;
    }

    /// Shows `reasons` under the waiting line: the live line on a terminal,
    /// else a log line when they changed or a while has passed.
    fn show(&mut self, waited: Duration, reasons: String) {
        let devices = self.count.describe();
        if std::io::stderr().is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template(
                    "gpusel: {spinner} waited {elapsed} for {prefix}\n{msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            });
            bar.set_prefix(format!(
                "{devices} (checking every {})",
                humantime::format_duration(self.interval)
            ));
            bar.set_message(reasons);
            return;
        }
        let due = match &self.last_log {
            None => true,
            Some((at, text)) => *text != reasons || at.elapsed() >= LOG_EVERY,
        };
        if due {
            out::eprint_line(
                "",
                &format!(
                    "waited {} for {devices}, checking every {}:\n{reasons}",
                    humantime::format_duration(Duration::from_secs(waited.as_secs())),
                    humantime::format_duration(self.interval)
                ),
            );
            self.last_log = Some((Instant::now(), reasons));
        }
    }

    /// Runs `f` (which prints) without garbling the status line.
    pub fn suspend(&self, f: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the status line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
