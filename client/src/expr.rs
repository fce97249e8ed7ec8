//! The expression language of `calc`: exactly one `a+b` or `a*b`, operands
//! decimal whole numbers `0..=4294967295`, spaces or tabs allowed around the
//! operands and the operator. This module owns turning a line a person typed
//! into an HSMAP [`Request`], and explaining in one line why a line is not
//! one. Nothing that fails here is ever sent.

use core::fmt;

use ipcs_common::wire::Request;
use ipcs_common::Op;

/// What every explanation ends with: what `calc` does accept.
pub const ACCEPTED: &str = "expected a+b or a*b with whole numbers 0..=4294967295";

/// Longest fragment of the input quoted back in an error message, in
/// characters, so that an explanation stays one short line whatever was typed.
const FRAGMENT_MAX_CHARS: usize = 16;

/// Which operand an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    First,
    Second,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::First => "first",
            Side::Second => "second",
        })
    }
}

/// Why a line is not an expression `calc` can send. The `String`s are
/// fragments of the input, already truncated and escaped for display.
/// `Display` gives the one-line explanation a person sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    #[error("nothing to compute; {ACCEPTED}")]
    Empty,
    #[error("the {0} operand is missing; {ACCEPTED}")]
    MissingOperand(Side),
    #[error("negative numbers are not accepted; {ACCEPTED}")]
    Negative,
    #[error("a + sign before a number is not accepted; {ACCEPTED}")]
    PlusSign,
    #[error("'{0}' is hexadecimal, not decimal; {ACCEPTED}")]
    Hexadecimal(String),
    #[error("'{0}' is not a whole number; {ACCEPTED}")]
    NotWhole(String),
    #[error("{0} is larger than 4294967295; {ACCEPTED}")]
    TooLarge(String),
    #[error("'{0}' is not a number; {ACCEPTED}")]
    NotANumber(String),
    #[error("'{0}' has a space inside a number; {ACCEPTED}")]
    SpaceInNumber(String),
    #[error("there is no operator; {ACCEPTED}")]
    MissingOperator,
    #[error("'{0}' is not a supported operator (only + and * are); {ACCEPTED}")]
    UnknownOperator(String),
    #[error("only one operation per line is supported; {ACCEPTED}")]
    ExtraOperation,
    #[error("unexpected '{0}' after the expression; {ACCEPTED}")]
    Trailing(String),
}

/// Parses one line into a request. Leading and trailing whitespace is
/// ignored; see the module docs for the language.
pub fn parse_expr(input: &str) -> Result<Request, ExprError> {
    let mut cursor = Cursor { input, pos: 0 };
    cursor.skip_space();
    if cursor.peek().is_none() {
        return Err(ExprError::Empty);
    }
    let a_start = cursor.pos;
    let a = operand(&mut cursor, Side::First)?;
    let spaced = cursor.skip_space();
    let op = operator(&mut cursor, a_start, spaced)?;
    cursor.skip_space();
    let b_start = cursor.pos;
    let b = operand(&mut cursor, Side::Second)?;
    cursor.skip_space();
    end(&mut cursor, b_start)?;
    Ok(Request { a, b, op })
}

/// A position in the input. Everything the grammar cares about is ASCII, so
/// the cursor moves by whole characters and slices stay on char boundaries.
struct Cursor<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    /// Skips spaces and tabs (and a stray `\r` from a CRLF file); says
    /// whether there were any.
    fn skip_space(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.bump();
        }
        self.pos > start
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
    }

    /// The word starting here: up to whitespace or an accepted operator.
    fn word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '+' || c == '*')
            .unwrap_or(rest.len());
        // A word is at least one character, even if that character is `+`.
        let end = end.max(rest.chars().next().map_or(0, char::len_utf8));
        &rest[..end]
    }
}

fn operand(cursor: &mut Cursor<'_>, side: Side) -> Result<u32, ExprError> {
    let next_is_digit = cursor.peek_second().is_some_and(|c| c.is_ascii_digit());
    match cursor.peek() {
        Some(c) if c.is_ascii_digit() => number(cursor),
        Some('-' | '\u{2212}') if next_is_digit => Err(ExprError::Negative),
        Some('+') if next_is_digit => Err(ExprError::PlusSign),
        None | Some('+' | '*') => Err(ExprError::MissingOperand(side)),
        Some(_) => Err(ExprError::NotANumber(fragment(cursor.word()))),
    }
}

/// Reads a run of decimal digits (the cursor is on the first one).
fn number(cursor: &mut Cursor<'_>) -> Result<u32, ExprError> {
    let start = cursor.pos;
    if cursor.peek() == Some('0') && matches!(cursor.peek_second(), Some('x' | 'X')) {
        return Err(ExprError::Hexadecimal(fragment(cursor.word())));
    }
    cursor.skip_digits();
    let digits = &cursor.input[start..cursor.pos];
    let next_is_digit = cursor.peek_second().is_some_and(|c| c.is_ascii_digit());
    match cursor.peek() {
        Some('.') if next_is_digit => {
            cursor.pos = start;
            return Err(ExprError::NotWhole(fragment(cursor.word())));
        }
        // `5x3` reads best as an unknown operator, so `x` is left to `operator`.
        Some(c) if (c.is_alphanumeric() && c != 'x' && c != 'X') || c == '_' || c == ',' => {
            cursor.pos = start;
            return Err(ExprError::NotANumber(fragment(cursor.word())));
        }
        _ => {}
    }
    // Only overflow is left: `digits` is a non-empty run of ASCII digits.
    digits
        .parse::<u32>()
        .map_err(|_| ExprError::TooLarge(fragment(digits)))
}

/// Reads the operator after the first operand (starting at `a_start`);
/// `spaced` says whether whitespace was skipped to get here.
fn operator(cursor: &mut Cursor<'_>, a_start: usize, spaced: bool) -> Result<Op, ExprError> {
    let op = match cursor.peek() {
        Some('+') => Op::Add,
        Some('*') => Op::Mul,
        None => return Err(ExprError::MissingOperator),
        Some(c) if c.is_ascii_digit() && spaced => {
            return Err(ExprError::SpaceInNumber(space_fragment(cursor, a_start)))
        }
        Some(c) if is_operator_like(c) => return Err(ExprError::UnknownOperator(fragment_char(c))),
        Some(_) => return Err(ExprError::NotANumber(fragment(cursor.word()))),
    };
    cursor.bump();
    Ok(op)
}

/// Checks that nothing but whitespace follows the second operand (which
/// starts at `b_start`).
fn end(cursor: &mut Cursor<'_>, b_start: usize) -> Result<(), ExprError> {
    let Some(c) = cursor.peek() else {
        return Ok(());
    };
    if c.is_ascii_digit() {
        return Err(ExprError::SpaceInNumber(space_fragment(cursor, b_start)));
    }
    if c == '+' || c == '*' || is_operator_like(c) {
        let mut after = Cursor {
            input: cursor.input,
            pos: cursor.pos,
        };
        after.bump();
        after.skip_space();
        if after
            .peek()
            .is_some_and(|n| n.is_ascii_digit() || n == '-' || n == '+')
        {
            return Err(ExprError::ExtraOperation);
        }
    }
    Err(ExprError::Trailing(fragment(cursor.rest().trim_end())))
}

/// Characters people use as operators: ASCII punctuation, the typographic
/// minus, times and division signs, and the letter x.
fn is_operator_like(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, 'x' | 'X' | '\u{2212}' | '\u{00d7}' | '\u{00f7}')
}

/// From the start of an operand through the digits after the space that
/// split it: `1 000` in `1 000+3`.
fn space_fragment(cursor: &mut Cursor<'_>, operand_start: usize) -> String {
    cursor.skip_digits();
    fragment(&cursor.input[operand_start..cursor.pos])
}

/// Quotes a piece of the input for an error message (see [`quote`]).
fn fragment(text: &str) -> String {
    quote(text, FRAGMENT_MAX_CHARS)
}

/// Makes input safe and short for a one-line message: control characters
/// escaped, at most `max_chars` characters then an ellipsis.
pub(crate) fn quote(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        push_visible(&mut out, c);
    }
    out
}

fn fragment_char(c: char) -> String {
    let mut out = String::new();
    push_visible(&mut out, c);
    out
}

/// Control characters (a pasted escape sequence, a NUL) are shown escaped so
/// that an explanation cannot move the cursor or ring the bell.
fn push_visible(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_debug());
    } else {
        out.push(c);
    }
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
