//! `gpusel`: pick idle NVIDIA GPUs for a job. The only crate that prints.

// Failures are reported, never panicked on (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod args;
mod choose;
mod config;
mod failure;
mod list;
mod manual;
mod out;
mod providers;
mod queue;
#[cfg(test)]
mod render_props;
mod sanitize;
mod serve;
mod signals;
mod stall;
mod status;
mod table;
mod term;
mod topo;
mod wait;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Sub};
use crate::choose::Mode;
use crate::failure::Failure;

fn main() -> ExitCode {
    // Known before parsing, so that even a usage error in `-- CMD` mode gets
    // the run-mode exit code.
    let running = std::env::args_os().any(|a| a == "--");
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let cli = match parsed {
        Ok((cli, matches)) => match args::misplaced_select_flags(&matches).first() {
            Some(problem) => return fail(Failure::Usage(problem.clone()), running),
            None => cli,
        },
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // Same shape as gpusel's own errors: `gpusel: error: ...`.
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            return fail(Failure::Usage(text.trim_end().to_string()), running);
        }
    };
    init_logging(cli.global.verbose);
    if running && cli.command.is_empty() && cli.sub.is_none() {
        let message = "nothing after `--`: give the command to run, e.g. gpusel -- python train.py";
        return fail(Failure::Usage(message.into()), running);
    }
    // A --json run that fails still prints one object on stdout.
    // (Not where --json has no meaning: serve, completions, man.)
    let json = cli.global.json
        && !running
        && matches!(
            cli.sub,
            None | Some(
                Sub::Env(_) | Sub::List(_) | Sub::Status(_) | Sub::Config | Sub::Topo | Sub::Queue
            )
        );
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                out::print_json_error(&failure, None);
            }
            fail(failure, running)
        }
    }
}

/// Prints `gpusel: error: ...` and returns the failure's exit code.
fn fail(failure: Failure, running: bool) -> ExitCode {
    out::eprint_line("error: ", &failure.to_string());
    ExitCode::from(failure.exit_code(running) as u8)
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Before the config: a broken config must not keep anyone from the manual.
    match &cli.sub {
        Some(Sub::Completions(_) | Sub::Man(_)) if cli.global.json => {
            return Err(Failure::Usage(
                "--json has no meaning for `completions` and `man`: they print a script and a manual page".into(),
            ));
        }
        Some(Sub::Completions(args)) => return manual::completions(args.shell),
        Some(Sub::Man(args)) => return manual::man(args),
        _ => {}
    }
    let config = config::load(&cli.global)?;
    if let Some(Sub::Config) = cli.sub {
        return config::render(&config, cli.global.json);
    }
    if let Some(Sub::Queue) = cli.sub {
        return queue::show(&config.lock_dir.value, cli.global.json);
    }
    if let Some(Sub::Serve(args)) = &cli.sub {
        if cli.global.json {
            return Err(Failure::Usage(
                "--json has no meaning for `serve`: the server always serves JSON at /api/v1/snapshot".into(),
            ));
        }
        return serve::run(args, &config);
    }
    signals::kill_children_on_termination();
    // Local providers block on their own, so no runtime is started for
    // them; the http:// provider brings its own.
    let provider = providers::watched(providers::open(&config)?);
    match cli.sub {
        Some(Sub::List(args)) => {
            let take = || -> Result<gpusel_core::Snapshot, Failure> {
                let mut snapshot = gpusel_core::block_on(provider.snapshot())?;
                // A remote node's leases are in its own lock directory; the
                // agent reports them, and this machine's would be wrong there.
                if !provider.is_remote() {
                    list::add_leases(&mut snapshot, &config.lock_dir.value);
                }
                Ok(snapshot)
            };
            if cli.global.json {
                if args.watch.is_some() {
                    return Err(Failure::Usage(
                        "--watch redraws the table and cannot be used with --json; for a stream of snapshots, run `gpusel list --json` in a loop".into(),
                    ));
                }
                return out::print_json(&take()?);
            }
            list::show(&args, &config.bans, &config.idle_rules(), take)
        }
        Some(Sub::Status(args)) => {
            let mut snapshot = gpusel_core::block_on(provider.snapshot())?;
            // This process's CUDA_VISIBLE_DEVICES says nothing about
            // another node's GPUs: a remote status shows them all.
            if !args.all && !provider.is_remote() {
                let visible = gpusel_core::Visible::from_env(&snapshot.gpus);
                out::warn_visible(&visible);
                status::keep_visible(&mut snapshot, &visible);
            }
            if cli.global.json {
                out::print_json(&snapshot)
            } else {
                out::print(&status::render(&snapshot))
            }
        }
        Some(Sub::Topo) => {
            let snapshot = gpusel_core::block_on(provider.snapshot())?;
            if !gpusel_core::has_topology(&snapshot.gpus) {
                let hint = if snapshot.provider == "nvml" {
                    ""
                } else {
                    " (NVML reads it: --provider nvml)"
                };
                out::eprint_line(
                    "warning: ",
                    &format!(
                        "the {} provider reports no topology for these GPUs: every link reads N/A{hint}",
                        snapshot.provider
                    ),
                );
            }
            let matrix = topo::matrix(&snapshot);
            if cli.global.json {
                out::print_json(&matrix)
            } else {
                out::print(&topo::render(&matrix))
            }
        }
        Some(Sub::Env(args)) => {
            choose::run(provider, &args, &config, Mode::Env, cli.global.json, &[])
        }
        Some(Sub::Config | Sub::Queue | Sub::Serve(_) | Sub::Completions(_) | Sub::Man(_)) => {
            Ok(())
        }
        None => {
            let mode = if cli.command.is_empty() {
                Mode::Print
            } else {
                Mode::Run
            };
            choose::run(
                provider,
                &cli.select,
                &config,
                mode,
                cli.global.json,
                &cli.command,
            )
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| out::QuietStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(verbose >= 2)
        .init();
}
