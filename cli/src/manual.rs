//! `gpusel completions SHELL` and `gpusel man`: generated from the clap
//! definition in [`crate::args`], so they always say what `--help` says.

use std::io;
use std::path::Path;

use clap::CommandFactory;

use crate::args::{Cli, ManArgs};
use crate::failure::Failure;
use crate::out;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gpusel", &mut script);
    out::print(&String::from_utf8_lossy(&script))
}

/// Prints gpusel(1), or with `--dir` writes it and a page per subcommand
/// (gpusel-list(1), ...) there and prints their paths.
pub fn man(args: &ManArgs) -> Result<(), Failure> {
    let Some(dir) = &args.dir else {
        let (_, page) = pages()?.swap_remove(0);
        return out::print(&page);
    };
    std::fs::create_dir_all(dir).map_err(|e| cannot_write(dir, e))?;
    let mut written = String::new();
    for (name, page) in pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, page).map_err(|e| cannot_write(&path, e))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    out::print(&written)
}

/// Every page: `gpusel.1` first, then `gpusel-SUB.1` per subcommand.
fn pages() -> Result<Vec<(String, String)>, Failure> {
    // Built, so that each subcommand knows its display name (gpusel-list)
    // and inherits the global options.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![("gpusel.1".to_string(), render(cmd.clone())?)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        pages.push((man.get_filename(), render(sub.clone())?));
    }
    Ok(pages)
}

fn render(cmd: clap::Command) -> Result<String, Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(concat!("gpusel ", env!("CARGO_PKG_VERSION")))
        .manual("gpusel manual")
        .render(&mut page)
        .map_err(Failure::Output)?;
    let page = String::from_utf8(page).map_err(|e| Failure::Output(io::Error::other(e)))?;
    // clap_mangen heads the after_long_help text "EXTRA"; gpusel's is the
    // exit codes and the environment, which man pages call so.
    Ok(page.replace("\n.SH EXTRA\n", "\n.SH \"EXIT STATUS AND ENVIRONMENT\"\n"))
}

fn cannot_write(path: &Path, e: io::Error) -> Failure {
    Failure::Output(io::Error::new(
        e.kind(),
        format!(
            "{}: {e}; give --dir a directory you can write to",
            path.display()
        ),
    ))
}
