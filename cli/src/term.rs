//! What the output is going to: whether to color it, and how wide it may be.

use std::io::IsTerminal;

/// `--color`: when to write ANSI colors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Color when stdout is a terminal, unless NO_COLOR is set or TERM is
    /// `dumb`; CLICOLOR_FORCE forces it on.
    Auto,
    /// Always color, even into a pipe.
    Always,
    /// Never color.
    Never,
}

/// Whether to color, from the flag and the environment as no-color.org and
/// the CLICOLOR convention say: the flag wins, then a non-empty NO_COLOR
/// turns color off, then CLICOLOR_FORCE (not `0`) turns it on, then a
/// terminal that is not `dumb` gets color.
pub fn use_color(choice: ColorChoice, env: impl Fn(&str) -> Option<String>, tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
            if set("NO_COLOR") {
                false
            } else if set("CLICOLOR_FORCE") && env("CLICOLOR_FORCE").as_deref() != Some("0") {
                true
            } else {
                tty && env("TERM").as_deref() != Some("dumb")
            }
        }
    }
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// How many columns the table may take: `COLUMNS` when set to a number (as
/// for `ls` and `ps`, so a script can ask for a width), else the terminal's
/// width when stdout is one, else no limit: a pipe or a file gets every
/// column whole, as `ps` does.
pub fn width(env: impl Fn(&str) -> Option<String>, tty: bool) -> Option<usize> {
    if let Some(cols) = env("COLUMNS").and_then(|c| c.trim().parse::<usize>().ok())
        && cols > 0
    {
        return Some(cols);
    }
    if !tty {
        return None;
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
}

/// [`width`] from the process environment.
pub fn output_width() -> Option<usize> {
    width(|k| std::env::var(k).ok(), stdout_is_tty())
}

/// Reads the process environment, for [`use_color`] and [`width`].
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn color_follows_the_conventions() {
        use ColorChoice::*;
        assert!(use_color(Auto, env(&[]), true));
        assert!(!use_color(Auto, env(&[]), false));
        assert!(!use_color(Auto, env(&[("TERM", "dumb")]), true));
        assert!(!use_color(Auto, env(&[("NO_COLOR", "1")]), true));
        assert!(use_color(Auto, env(&[("NO_COLOR", "")]), true));
        assert!(use_color(Auto, env(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(!use_color(Auto, env(&[("CLICOLOR_FORCE", "0")]), false));
        assert!(!use_color(
            Auto,
            env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]),
            true
        ));
        assert!(use_color(Always, env(&[("NO_COLOR", "1")]), false));
        assert!(!use_color(Never, env(&[("CLICOLOR_FORCE", "1")]), true));
    }

    #[test]
    fn width_from_columns_or_unlimited_in_a_pipe() {
        assert_eq!(width(env(&[("COLUMNS", "80")]), false), Some(80));
        assert_eq!(width(env(&[("COLUMNS", "junk")]), false), None);
        assert_eq!(width(env(&[("COLUMNS", "0")]), false), None);
        assert_eq!(width(env(&[]), false), None);
    }
}
