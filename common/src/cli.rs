//! The one flag grammar of the five IPCS binaries (issue 19):
//!
//! * time is a duration with a unit (`20ms`, `10s`, `2m`, `1h`), parsed by
//!   [`crate::duration::parse_duration`]; old `-ms`/`-secs` flags stay as
//!   hidden aliases that take the old integer ([`old_unit`]);
//! * every long flag can also come from an environment variable
//!   `IPCS_<BINARY>_<FLAG>`, e.g. `--timeout-min` of `ipcs-lb` is
//!   `IPCS_LB_TIMEOUT_MIN` ([`env_name`]); the command line wins over the
//!   environment, and `--help` shows each variable;
//! * `--version` names the git commit the binary was built from
//!   ([`version!`](crate::version), filled in by each binary crate's
//!   `build.rs`, which includes `common/build_version.rs`).

use std::ffi::OsString;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, CommandFactory, FromArgMatches};

/// `0.1.0 (abc1234)`: the crate's version and the git commit it was built
/// from (`unknown` outside a git checkout), for `#[command(version = ...)]`.
/// Expands in the binary's crate, whose `build.rs` sets `IPCS_GIT_COMMIT`.
#[macro_export]
macro_rules! version {
    () => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (",
            env!("IPCS_GIT_COMMIT"),
            ")"
        )
    };
}

/// The commit a `--version` line names: `NAME VERSION (COMMIT)` where
/// COMMIT is a hex hash of 7 or more digits, or `unknown` outside a git
/// checkout ([`version!`]). `None` when the line is not of that form.
pub fn version_commit<'a>(line: &'a str, name: &str, version: &str) -> Option<&'a str> {
    let hash = line
        .trim()
        .strip_prefix(name)?
        .strip_prefix(' ')?
        .strip_prefix(version)?
        .strip_prefix(" (")?
        .strip_suffix(')')?;
    let is_hash = hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit());
    (hash == "unknown" || is_hash).then_some(hash)
}

/// The environment variable of long flag `long` of the binary whose prefix
/// is `prefix`: `env_name("IPCS_LB", "timeout-min")` is `IPCS_LB_TIMEOUT_MIN`.
pub fn env_name(prefix: &str, long: &str) -> String {
    format!("{prefix}_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// `command` with an `IPCS_*` variable on every visible long flag (hidden
/// aliases, `--help` and `--version` have none).
pub fn with_env(command: Command, prefix: &str) -> Command {
    let prefix = prefix.to_owned();
    command.mut_args(move |arg| {
        let skip = arg.is_hide_set()
            || arg.is_positional()
            || matches!(arg.get_id().as_str(), "help" | "version");
        match arg.get_long() {
            Some(long) if !skip => {
                let name = env_name(&prefix, long);
                arg.env(name)
            }
            _ => arg,
        }
    })
}

/// Parses the process's command line (and `IPCS_*` environment) into `T`,
/// exiting with clap's message and status 2 on a bad one.
pub fn parse<T: CommandFactory + FromArgMatches>(prefix: &str) -> T {
    parse_from(prefix, std::env::args_os())
}

/// [`parse`] of the given arguments.
pub fn parse_from<T, I>(prefix: &str, args: I) -> T
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let command = with_env(T::command(), prefix);
    match try_parse_with(command.clone(), args) {
        Ok(value) => value,
        Err(error) => {
            let note = env_note(&command, &error);
            let code = error.exit_code();
            let _ = error.print();
            if let Some(note) = note {
                eprintln!("{note}");
            }
            std::process::exit(code);
        }
    }
}

/// [`parse_from`] without exiting: for tests.
pub fn try_parse_from<T, I>(prefix: &str, args: I) -> Result<T, clap::Error>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    try_parse_with(with_env(T::command(), prefix), args)
}

fn try_parse_with<T, I>(command: Command, args: I) -> Result<T, clap::Error>
where
    T: FromArgMatches,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let mut command = command;
    let matches = command.try_get_matches_from_mut(args)?;
    T::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// When a bad value came from the environment, says which variable held it
/// (clap's own message names only the flag).
fn env_note(command: &Command, error: &clap::Error) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = error.get(ContextKind::InvalidValue) else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let var = arg.get_env()?;
    let set = std::env::var_os(var)?;
    (set.to_string_lossy() == value.as_str()).then(|| {
        format!(
            "note: the value {value:?} of --{long} came from the environment variable {}",
            var.to_string_lossy()
        )
    })
}

/// A clap `value_parser` for a duration between `min` and `max` (both
/// included), e.g. `value_parser = duration_in(MS * 10, SECOND * 60)`.
pub fn duration_in(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let d = crate::duration::parse_duration(text).map_err(|e| e.to_string())?;
        if d < min || d > max {
            return Err(format!(
                "`{}` is out of range ({min:?} to {max:?})",
                text.trim()
            ));
        }
        Ok(d)
    }
}

/// The value of a time flag that also has an old hidden alias taking a
/// bare integer in the old unit (`--timeout-ms 20` for `--timeout 20ms`):
/// the alias's value if given (clap rejects giving both), else the new one.
pub fn old_unit(new: Duration, old: Option<u64>, unit: Duration) -> Duration {
    old.map_or(new, |n| {
        unit.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_name_a_commit_or_unknown() {
        assert_eq!(
            version_commit("lb 0.1.0 (abc1234)\n", "lb", "0.1.0"),
            Some("abc1234")
        );
        assert_eq!(
            version_commit("lb 0.1.0 (unknown)", "lb", "0.1.0"),
            Some("unknown")
        );
        assert_eq!(version_commit("lb 0.1.0 (abc)", "lb", "0.1.0"), None);
        assert_eq!(version_commit("lb 0.1.0", "lb", "0.1.0"), None);
        assert_eq!(
            version_commit("server 0.1.0 (abc1234)", "lb", "0.1.0"),
            None
        );
    }
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "t")]
    struct Args {
        #[arg(long, default_value = "20ms", value_parser = crate::duration::parse_duration)]
        timeout: Duration,
        #[arg(long = "timeout-ms", hide = true, conflicts_with = "timeout")]
        timeout_ms: Option<u64>,
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("IPCS_LB", "timeout-min"), "IPCS_LB_TIMEOUT_MIN");
        let command = with_env(Args::command(), "IPCS_T");
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        };
        assert_eq!(env("timeout").as_deref(), Some("IPCS_T_TIMEOUT"));
        assert_eq!(env("timeout_ms"), None);
    }

    #[test]
    fn old_and_new_forms() {
        let parse = |args: &[&str]| {
            try_parse_from::<Args, _>("IPCS_T", std::iter::once("t").chain(args.iter().copied()))
                .map(|a| old_unit(a.timeout, a.timeout_ms, Duration::from_millis(1)))
        };
        assert_eq!(parse(&[]).unwrap(), Duration::from_millis(20));
        assert_eq!(
            parse(&["--timeout", "1h"]).unwrap(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse(&["--timeout-ms", "7"]).unwrap(),
            Duration::from_millis(7)
        );
        let both = parse(&["--timeout", "1s", "--timeout-ms", "7"]).unwrap_err();
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        assert!(parse(&["--timeout", "20"]).is_err());
        assert!(parse(&["--timeout", "20x"]).is_err());
    }

    #[test]
    fn ranges() {
        let p = duration_in(Duration::from_millis(10), Duration::from_secs(60));
        assert_eq!(p("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(p("1m"), Ok(Duration::from_secs(60)));
        assert!(p("9ms").unwrap_err().contains("out of range (10ms to 60s)"));
        assert!(p("1h").is_err());
        assert!(p("x").is_err());
    }
}
