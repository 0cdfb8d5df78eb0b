//! `gpusel list`: the table of the GPUs the provider sees, once or watched.

use std::path::Path;

use gpusel_core::Snapshot;

use crate::args::ListArgs;
use crate::failure::Failure;
use crate::table::{self, Look};
use crate::{out, term, watch};

/// Fills in who leases each device. A lock directory that cannot be used is
/// a warning here, not a failure: the GPUs are still worth showing.
pub fn add_leases(snapshot: &mut Snapshot, lock_dir: &Path) {
    if let Err(e) = gpusel_core::add_leases(snapshot, lock_dir) {
        let e = crate::failure::lease_message(&e);
        crate::out::eprint_line("warning: ", &format!("leases not shown: {e}"));
    }
}

/// Prints the table once, or with `--watch` redraws it until Ctrl-C;
/// `take` reads a fresh snapshot, leases filled in.
pub fn show(
    args: &ListArgs,
    bans: &[gpusel_core::Ban],
    idle: &gpusel_core::IdleRules,
    mut take: impl FnMut() -> Result<Snapshot, Failure>,
) -> Result<(), Failure> {
    let tty = term::stdout_is_tty();
    let look = |width| Look {
        width,
        color: term::use_color(args.color, term::env_var, tty),
        full_cmd: args.full_cmd,
        wide: args.wide,
        bans: bans.to_vec(),
        idle: *idle,
    };
    let Some(interval) = args.watch else {
        return out::print(&table::render(&take()?, &look(term::output_width())));
    };
    let title = format!(
        "Every {}: gpusel list (Ctrl-C to quit)\n",
        humantime::format_duration(interval)
    );
    watch::run(
        interval,
        tty,
        term::output_width,
        || terminal_size::terminal_size_of(std::io::stdout()).map(|(_, h)| usize::from(h.0)),
        |width| match take() {
            Ok(snapshot) => format!("{title}{}", table::render(&snapshot, &look(width))),
            Err(e) => format!(
                "{title}gpusel: error: {}\n",
                crate::sanitize::clean_lines(&e.to_string())
            ),
        },
    )
}
