//! `calc`, the IPCS client: how a person (or a script) uses the service.
//!
//! * [`expr`]: the expression language, a typed line to an HSMAP request.
//! * [`target`]: `HOST:PORT` checked and resolved.
//! * [`exchange`]: the sans-io retry and answer-matching rules.
//! * [`transport`]: [`CalcClient`], one UDP socket driving exchanges.
//! * [`repl`]: the interactive prompt; [`batch`]: expressions from
//!   arguments or a pipe, for scripts.
//!
//! This file holds what both front ends share: evaluating one line and
//! rendering its result.

#![forbid(unsafe_code)]

pub mod batch;
pub mod exchange;
pub mod expr;
pub mod repl;
pub mod target;
pub mod transport;

use ipcs_common::wire::{Reply, Response, Status};

pub use exchange::RetryPolicy;
pub use expr::{parse_expr, ExprError};
pub use target::{Target, TargetError, DEFAULT_TARGET};
pub use transport::{CalcClient, ClientStats, TransportError};

/// Exit status when every expression was answered.
pub const EXIT_OK: u8 = 0;
/// Exit status when at least one expression was rejected or got no result.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when `calc` could not start: bad arguments, a target that
/// does not resolve, no socket. (clap uses it for usage errors too.)
pub const EXIT_USAGE: u8 = 2;

/// Why a line produced no result.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The line is not an expression; nothing was sent.
    #[error(transparent)]
    Rejected(#[from] ExprError),
    /// The service answered with an error status.
    #[error("{}", .0.describe())]
    Service(Status),
    /// The service could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Parses `line` and, if it is an expression, asks the service.
pub fn evaluate(client: &mut CalcClient, line: &str) -> Result<Reply, EvalError> {
    let request = parse_expr(line)?;
    match client.request(request)? {
        Response::Reply(reply) => Ok(reply),
        Response::Error(status) => Err(EvalError::Service(status)),
    }
}

/// A result as `calc` prints it: `66850  (server 3)` with the server shown,
/// `66850` without. A reply that names no server (id 0) has no suffix.
pub fn render_reply(reply: &Reply, show_server: bool) -> String {
    if show_server && reply.server_id != 0 {
        format!("{}  (server {})", reply.result, reply.server_id)
    } else {
        reply.result.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_with_and_without_the_server() {
        let reply = Reply {
            result: 66_850,
            server_id: 3,
        };
        assert_eq!(render_reply(&reply, true), "66850  (server 3)");
        assert_eq!(render_reply(&reply, false), "66850");
        let anonymous = Reply {
            result: 18_446_744_065_119_617_025,
            server_id: 0,
        };
        assert_eq!(render_reply(&anonymous, true), "18446744065119617025");
    }

    #[test]
    fn service_errors_are_words() {
        for status in Status::ALL {
            let message = EvalError::Service(status).to_string();
            assert_eq!(message, status.describe());
            let code = status.to_u8().to_string();
            assert!(!message.contains(&code), "{message} shows code {code}");
        }
    }
}
