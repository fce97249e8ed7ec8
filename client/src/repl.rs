//! Interactive `calc`: a prompt with line editing and a history kept across
//! sessions (rustyline), `help`, `exit`/`quit`/Ctrl-D, Ctrl-C to clear the
//! line. This module owns the prompt loop, the commands and the history
//! file; evaluating a line is [`crate::evaluate`].

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

use crate::{evaluate, render_reply, CalcClient};

/// What the prompt shows.
pub const PROMPT: &str = "calc> ";
/// Most lines kept in the history file.
pub const HISTORY_MAX: usize = 1000;

/// Why the prompt stopped other than by the user leaving.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("cannot set up the terminal: {0}")]
    Editor(#[source] ReadlineError),
    #[error("cannot read from the terminal: {0}")]
    Read(#[source] ReadlineError),
    #[error("cannot write to the terminal: {0}")]
    Write(#[from] io::Error),
}

/// One line at the prompt, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Blank,
    Help,
    Exit,
    Expression(&'a str),
}

impl<'a> Line<'a> {
    /// Commands are matched whole, ignoring case and surrounding spaces;
    /// everything else is an expression (and explains itself if it is not).
    pub fn classify(line: &'a str) -> Line<'a> {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            Line::Blank
        } else if ["help", "?", "h"]
            .iter()
            .any(|c| trimmed.eq_ignore_ascii_case(c))
        {
            Line::Help
        } else if ["exit", "quit", "q"]
            .iter()
            .any(|c| trimmed.eq_ignore_ascii_case(c))
        {
            Line::Exit
        } else {
            Line::Expression(trimmed)
        }
    }
}

/// Where the history is kept: `<data dir>/ipcs/calc_history` (on Linux
/// `$XDG_DATA_HOME` or `~/.local/share`); `None` if there is no data dir.
pub fn history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("ipcs").join("calc_history"))
}

/// The text `help` prints.
pub fn help_text(client: &CalcClient, history: Option<&Path>) -> String {
    let history = match history {
        Some(path) => format!("kept in {}", path.display()),
        None => "not kept (no data directory)".to_owned(),
    };
    format!(
        "Type an expression and press Enter; it is sent to {target}.\n\
         \x20 a+b   adds,        e.g. 500 + 350\n\
         \x20 a*b   multiplies,  e.g. 50*1337\n\
         a and b are whole decimal numbers 0..=4294967295; spaces are optional.\n\
         A result shows the server that computed it: 66850  (server 3).\n\
         No answer within {timeout} ms: the request is sent again, {attempts} attempts in all.\n\
         Commands: help (or ?), exit or quit (or Ctrl-D). Ctrl-C clears the line.\n\
         Up and Down browse the history, {history}.",
        target = client.target(),
        timeout = client.policy().timeout().as_millis(),
        attempts = client.policy().attempts(),
    )
}

/// Runs the prompt until the user leaves. `history` is the history file
/// (`None`: no history is kept).
pub fn run(
    client: &mut CalcClient,
    show_server: bool,
    history: Option<&Path>,
) -> Result<(), ReplError> {
    let config = Config::builder()
        .max_history_size(HISTORY_MAX)
        .map_err(ReplError::Editor)?
        .history_ignore_dups(true)
        .map_err(ReplError::Editor)?
        .auto_add_history(false)
        .build();
    let mut editor = DefaultEditor::with_config(config).map_err(ReplError::Editor)?;
    let history = history.filter(|path| prepare_history(&mut editor, path));
    let mut out = io::stdout();
    writeln!(
        out,
        "calc: asking {}. Type help for help, exit to leave.",
        describe_target(client)
    )?;
    loop {
        let input = match editor.readline(PROMPT) {
            Ok(input) => input,
            // Ctrl-C: the line is dropped, a fresh prompt follows.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(ReplError::Read(error)),
        };
        let line = Line::classify(&input);
        if let Line::Help | Line::Expression(_) = line {
            remember(&mut editor, input.trim(), history);
        }
        match line {
            Line::Blank => {}
            Line::Exit => break,
            Line::Help => writeln!(out, "{}", help_text(client, history))?,
            Line::Expression(expr) => match evaluate(client, expr) {
                Ok(reply) => writeln!(out, "{}", render_reply(&reply, show_server))?,
                Err(error) => writeln!(out, "error: {error}")?,
            },
        }
    }
    Ok(())
}

/// The target as typed, with the address it resolved to when that says more.
fn describe_target(client: &CalcClient) -> String {
    let target = client.target();
    let addr = target.addr().to_string();
    if target.name() == addr {
        addr
    } else {
        format!("{target} ({addr})")
    }
}

/// Creates the history's directory and loads the file; says whether the
/// history can be used. A history problem never stops the prompt.
fn prepare_history(editor: &mut DefaultEditor, path: &Path) -> bool {
    if let Some(dir) = path.parent() {
        if let Err(error) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), %error, "cannot create the history directory; history is off");
            return false;
        }
    }
    match editor.load_history(path) {
        Ok(()) => true,
        Err(ReadlineError::Io(error)) if error.kind() == io::ErrorKind::NotFound => true,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the history; history is off");
            false
        }
    }
}

/// Adds a line to the history and appends it to the file at once, so the
/// history survives however the session ends.
fn remember(editor: &mut DefaultEditor, line: &str, history: Option<&Path>) {
    if editor.add_history_entry(line).is_err() {
        return;
    }
    if let Some(path) = history {
        if let Err(error) = editor.append_history(path) {
            tracing::warn!(path = %path.display(), %error, "cannot save the history");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_expressions() {
        for blank in ["", "   ", "\t"] {
            assert_eq!(Line::classify(blank), Line::Blank);
        }
        for help in ["help", " HELP ", "?", "h"] {
            assert_eq!(Line::classify(help), Line::Help, "{help:?}");
        }
        for exit in ["exit", "quit", " Quit", "q", "EXIT  "] {
            assert_eq!(Line::classify(exit), Line::Exit, "{exit:?}");
        }
        assert_eq!(Line::classify(" 50*1337 "), Line::Expression("50*1337"));
        assert_eq!(Line::classify("help me"), Line::Expression("help me"));
        assert_eq!(Line::classify("exit 1"), Line::Expression("exit 1"));
    }

    #[test]
    fn history_lives_in_the_data_dir() {
        if let Some(path) = history_path() {
            assert!(path.ends_with("ipcs/calc_history"), "{}", path.display());
            assert_eq!(
                path.parent().and_then(Path::parent),
                dirs::data_dir().as_deref()
            );
        }
    }
}
