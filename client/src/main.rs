//! `calc`: parses the command line and wires the client's parts together.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use ipcs_client::{
    batch, repl, CalcClient, RetryPolicy, Target, DEFAULT_TARGET, EXIT_FAILED, EXIT_OK, EXIT_USAGE,
};
use ipcs_common::cli::{duration_in, old_unit};

/// calc, the IPCS calculator client: computes a+b and a*b on the
/// Interplanetary Calculator Service.
///
/// With no EXPR and a terminal on stdin, calc opens a prompt (line editing,
/// history, `help`). With EXPRs, or with expressions piped in one a line, it
/// prints one result a line and exits.
#[derive(Debug, Parser)]
#[command(
    name = "calc",
    version = ipcs_common::version!(),
    after_help = "\
Examples:
  calc calc.batata:8080                     open the prompt
  calc calc.batata:8080 '50*1337' '500 + 350'
  printf '1+2\\n3*4\\n' | calc calc.batata:8080

Exit status: 0 every expression got a result; 1 at least one was rejected,
got an error from the service or no answer; 2 calc could not start (bad
arguments, a target that does not resolve)."
)]
struct Args {
    /// The load balancer to ask, as HOST:PORT (IPv6 in brackets: `[::1]:8080`). HOST is
    /// resolved like any hostname (/etc/hosts, DNS); IPv4 is preferred.
    #[arg(value_name = "HOST:PORT", default_value = DEFAULT_TARGET)]
    target: String,

    /// Expressions to compute instead of opening the prompt: a+b or a*b with
    /// whole numbers 0..=4294967295. Quote them for the shell: '50*1337'.
    #[arg(value_name = "EXPR")]
    exprs: Vec<String>,

    /// How long to wait for an answer before sending a request again
    /// (1ms..=1m), e.g. 300ms.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = duration_in(Duration::from_millis(1), Duration::from_secs(60)),
    )]
    timeout: Duration,

    /// Old spelling of --timeout, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        hide = true,
        conflicts_with = "timeout",
        value_parser = clap::value_parser!(u64).range(1..=60_000),
    )]
    timeout_ms: Option<u64>,

    /// How many times to send a request before giving up with "no answer"
    /// (1..=10).
    #[arg(
        long,
        value_name = "N",
        default_value_t = RetryPolicy::DEFAULT_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=10),
    )]
    attempts: u32,

    /// Show which server computed each result, as `66850  (server 3)`.
    /// Without this flag it is on at the prompt and off for EXPRs and piped
    /// input (just the number). `--show-server` alone means true;
    /// `--show-server=false` turns it off.
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
    )]
    show_server: Option<bool>,

    /// Never show the server: the same as --show-server=false.
    #[arg(long, conflicts_with = "show_server")]
    hide_server: bool,
}

impl Args {
    /// The explicit choice, if any, of showing the server.
    fn show_server(&self) -> Option<bool> {
        if self.hide_server {
            Some(false)
        } else {
            self.show_server
        }
    }
}

fn main() -> ExitCode {
    let args: Args = ipcs_common::cli::parse_from(
        "IPCS_CALC",
        batch::shield_negative_exprs(std::env::args_os(), &value_flags()),
    );
    ipcs_common::logging::init();

    let target = match Target::resolve(&args.target) {
        Ok(target) => target,
        Err(error) => return fail(EXIT_USAGE, &error),
    };
    let timeout = old_unit(args.timeout, args.timeout_ms, Duration::from_millis(1));
    let policy = RetryPolicy::new(timeout, args.attempts);
    let mut client = match CalcClient::connect(target, policy) {
        Ok(client) => client,
        Err(error) => return fail(EXIT_USAGE, &error),
    };
    tracing::debug!(target = %client.target(), addr = %client.target().addr(), ?policy, "calc starting");

    let stdin = io::stdin();
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let summary = if !args.exprs.is_empty() {
        let show = args.show_server().unwrap_or(false);
        batch::run_args(&mut client, &args.exprs, show, &mut out, &mut err)
    } else if !stdin.is_terminal() {
        let show = args.show_server().unwrap_or(false);
        batch::run_lines(&mut client, stdin.lock(), show, &mut out, &mut err)
    } else {
        drop((out, err));
        let show = args.show_server().unwrap_or(true);
        let history = repl::history_path();
        return match repl::run(&mut client, show, history.as_deref()) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(error) => fail(EXIT_FAILED, &error),
        };
    };
    tracing::debug!(stats = ?client.stats(), "calc done");
    match summary {
        Ok(summary) => ExitCode::from(summary.exit_code()),
        // Whoever reads our output went away (`calc ... | head -1`): stop quietly.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(EXIT_FAILED),
        Err(error) => fail(EXIT_FAILED, &error),
    }
}

/// The long flags that take a value (`--timeout`, ...), from clap's own
/// definition of the arguments.
fn value_flags() -> Vec<String> {
    let mut command = Args::command();
    command.build();
    command
        .get_arguments()
        .filter(|a| a.get_num_args().is_some_and(|n| n.min_values() > 0))
        .filter_map(|a| a.get_long().map(|long| format!("--{long}")))
        .collect()
}

fn fail(code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("calc: {error}");
    ExitCode::from(code)
}
