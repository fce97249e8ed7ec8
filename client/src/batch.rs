//! Non-interactive `calc`, for scripts: expressions given as arguments, or
//! read a line at a time from a pipe. Each result goes to stdout on a line of
//! its own; each failure goes to stderr, naming the expression (and line),
//! and makes the run fail. Blank input lines are skipped. Lines are read
//! with a length bound, so any input runs in bounded memory.

use std::ffi::OsString;
use std::io::{self, BufRead, Write};

use crate::expr::quote;
use crate::{evaluate, render_reply, CalcClient, EXIT_FAILED, EXIT_OK};

/// Longest input line accepted, in bytes; longer lines are rejected whole.
pub const MAX_LINE_LEN: usize = 4096;
/// How much of a failed expression is quoted in its message.
const QUOTE_MAX_CHARS: usize = 40;

/// How a run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Expressions that got a result.
    pub answered: u64,
    /// Expressions (or input lines) that did not.
    pub failed: u64,
}

impl Summary {
    /// [`EXIT_OK`] if nothing failed, else [`EXIT_FAILED`].
    pub fn exit_code(&self) -> u8 {
        if self.failed == 0 {
            EXIT_OK
        } else {
            EXIT_FAILED
        }
    }
}

/// Makes an argument such as `-5+3` reach the expression parser (and its
/// "negative numbers are not accepted") instead of clap's "unexpected
/// argument '-5'". calc has no flag that starts with a minus and a digit, so
/// once the target has been given, such an argument is an expression unless
/// it is the value of one of `value_flags` (long flags that take a value,
/// `--timeout -5` stays clap's error) or follows `--`. A leading space,
/// which the parser skips, keeps clap from reading it as a flag; the order
/// of the arguments is kept. Before the target nothing is changed: there
/// `-5+3` is neither a target nor a flag, and clap says so.
pub fn shield_negative_exprs<I: IntoIterator<Item = OsString>>(
    args: I,
    value_flags: &[String],
) -> Vec<OsString> {
    let mut args = args.into_iter();
    // The program name is not an argument.
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let mut after_dashes = false;
    let mut target_seen = false;
    let mut value_expected = false;
    for arg in args {
        let bytes = arg.as_encoded_bytes();
        let negative = bytes.len() >= 2 && bytes[0] == b'-' && bytes[1].is_ascii_digit();
        if after_dashes || value_expected {
            value_expected = false;
            out.push(arg);
            continue;
        }
        if bytes == b"--" {
            after_dashes = true;
        } else if bytes.starts_with(b"-") && !negative {
            value_expected = value_flags.iter().any(|f| f.as_bytes() == bytes);
        } else if !target_seen {
            target_seen = true;
        } else if negative {
            let mut shielded = OsString::from(" ");
            shielded.push(&arg);
            out.push(shielded);
            continue;
        }
        out.push(arg);
    }
    out
}

/// Evaluates each expression given on the command line, in order.
pub fn run_args(
    client: &mut CalcClient,
    exprs: &[String],
    show_server: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for expr in exprs {
        let label = quote(expr.trim(), QUOTE_MAX_CHARS);
        evaluate_one(client, expr, &label, show_server, out, err, &mut summary)?;
    }
    Ok(summary)
}

/// Evaluates each non-blank line of `input` until it ends.
pub fn run_lines(
    client: &mut CalcClient,
    mut input: impl BufRead,
    show_server: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut buf = Vec::with_capacity(256);
    let mut number = 0u64;
    while let Some(fits) = read_line_bounded(&mut input, &mut buf, MAX_LINE_LEN)? {
        number += 1;
        if !fits {
            summary.failed += 1;
            writeln!(
                err,
                "calc: line {number}: longer than {MAX_LINE_LEN} bytes, skipped"
            )?;
            continue;
        }
        let Ok(line) = std::str::from_utf8(&buf) else {
            summary.failed += 1;
            writeln!(err, "calc: line {number}: not valid UTF-8, skipped")?;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let label = format!("line {number}: {}", quote(line.trim(), QUOTE_MAX_CHARS));
        evaluate_one(client, line, &label, show_server, out, err, &mut summary)?;
    }
    Ok(summary)
}

fn evaluate_one(
    client: &mut CalcClient,
    expr: &str,
    label: &str,
    show_server: bool,
    out: &mut impl Write,
    err: &mut impl Write,
    summary: &mut Summary,
) -> io::Result<()> {
    match evaluate(client, expr) {
        Ok(reply) => {
            summary.answered += 1;
            writeln!(out, "{}", render_reply(&reply, show_server))?;
            // A script reading our output line by line sees each result now.
            out.flush()
        }
        Err(error) => {
            summary.failed += 1;
            writeln!(err, "calc: {label}: {error}")
        }
    }
}

/// Reads one line (without its `\n`) into `line`, keeping at most `max`
/// bytes. Returns `None` at end of input, `Some(true)` for a line that fits,
/// `Some(false)` for one that was longer (consumed, `line` left empty).
pub fn read_line_bounded(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut fits = true;
    let mut read_any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(fits));
        }
        read_any = true;
        let (chunk, used, ends_line) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if fits && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            fits = false;
            line.clear();
        }
        input.consume(used);
        if ends_line {
            return Ok(Some(fits));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Option<(bool, String)>> {
        // A tiny buffer makes lines span several fills.
        let mut reader = io::BufReader::with_capacity(3, input);
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            let got = read_line_bounded(&mut reader, &mut line, max).unwrap();
            seen.push(got.map(|fits| (fits, String::from_utf8_lossy(&line).into_owned())));
            if got.is_none() {
                return seen;
            }
        }
    }

    fn shield(args: &[&str]) -> Vec<String> {
        let flags = ["--timeout".to_owned(), "--attempts".to_owned()];
        shield_negative_exprs(args.iter().map(OsString::from), &flags)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn only_expressions_after_the_target_are_shielded() {
        assert_eq!(
            shield(&[
                "calc",
                "h:1",
                "-5+3",
                "--timeout",
                "-7",
                "-x",
                "-",
                "-1",
                "--",
                "-9"
            ]),
            [
                "calc",
                "h:1",
                " -5+3",
                "--timeout",
                "-7",
                "-x",
                "-",
                " -1",
                "--",
                "-9"
            ]
        );
        // Flags before the target, and a negative before it, are left alone.
        assert_eq!(
            shield(&["calc", "--attempts", "2", "-5+3", "1+2"]),
            ["calc", "--attempts", "2", "-5+3", "1+2"]
        );
        assert_eq!(
            shield(&["calc", "--attempts", "2", "h:1", "-5+3"]),
            ["calc", "--attempts", "2", "h:1", " -5+3"]
        );
        assert_eq!(shield(&["calc"]), ["calc"]);
    }

    #[test]
    fn bounded_lines() {
        let ok = |s: &str| Some((true, s.to_owned()));
        assert_eq!(lines(b"", 8), vec![None]);
        assert_eq!(lines(b"1+2\n3*4\n", 8), vec![ok("1+2"), ok("3*4"), None]);
        assert_eq!(lines(b"1+2\n3*4", 8), vec![ok("1+2"), ok("3*4"), None]);
        assert_eq!(lines(b"\n\n", 8), vec![ok(""), ok(""), None]);
        assert_eq!(lines(b"12345678\n", 8), vec![ok("12345678"), None]);
        assert_eq!(
            lines(b"123456789\n1+1\n", 8),
            vec![Some((false, String::new())), ok("1+1"), None]
        );
        assert_eq!(
            lines(b"123456789", 8),
            vec![Some((false, String::new())), None]
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Summary::default().exit_code(), EXIT_OK);
        let failed = Summary {
            answered: 5,
            failed: 1,
        };
        assert_eq!(failed.exit_code(), EXIT_FAILED);
    }
}
