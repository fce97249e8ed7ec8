//! The LB admin endpoint's control verbs (HAProxy's runtime API `set server
//! state`, Envoy's `/logging?level=`): `POST` changes, `GET` only reads.
//!
//! - `POST /servers/<id|mac>/drain`: no new requests to it; those in flight
//!   finish.
//! - `POST /servers/<id|mac>/eject[?for=<duration>]`: out of rotation until
//!   set ready (or for the duration, e.g. `30s`).
//! - `POST /servers/<id|mac>/ready` (or `/undrain`): back in rotation.
//! - `POST /logging?level=<filter>`: the log filter (`debug`,
//!   `info,ipcs_lb=trace`: `RUST_LOG` syntax); `GET /logging` shows it.
//!
//! A command replaces the shared [`Overrides`] table that every worker's
//! core reads before each pick (see [`crate::operator`]); the admin thread
//! is its only writer (one request at a time), so a load, change and store
//! cannot lose a concurrent change.

use std::time::{Duration, Instant};

use ipcs_common::admin_http::Answer;
use ipcs_common::duration::parse_duration;
use ipcs_common::logging;

use crate::operator::{Command, SharedOverrides, Target, DRAINING, EJECTED_BY_OPERATOR};
use crate::snapshot::ServerSnapshot;

/// The longest `eject?for=` taken (a day: longer is "until undone").
pub const MAX_EJECT_FOR: Duration = Duration::from_secs(24 * 3600);

const VERBS: &str = "drain, undrain, ready, eject[?for=DURATION]";

/// Answers a `POST` to `path`: a server command or a log filter change.
pub fn post(
    path: &str,
    overrides: &SharedOverrides,
    snapshot: &ServerSnapshot,
    now: Instant,
) -> Answer {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if route == "/logging" {
        return set_logging(query);
    }
    let Some(rest) = route.strip_prefix("/servers/") else {
        return (
            "404 Not Found",
            "no such control path (try POST /servers/<id|mac>/<verb> or POST /logging?level=)\n"
                .into(),
        );
    };
    let Some((name, verb)) = rest.split_once('/') else {
        return bad_request(format!("missing verb: POST /servers/{rest}/<{VERBS}>"));
    };
    let Some(target) = Target::parse(name) else {
        return bad_request(format!(
            "{name:?} is neither a server id (0..=255) nor a MAC (02:42:ac:10:ee:0b)"
        ));
    };
    let command = match (verb, query) {
        ("drain", "") => Command::Drain(target),
        ("undrain" | "ready", "") => Command::Ready(target),
        ("eject", "") => Command::Eject(target, None),
        ("eject", q) => match q.strip_prefix("for=").map(parse_duration) {
            Some(Ok(d)) if !d.is_zero() && d <= MAX_EJECT_FOR => Command::Eject(target, Some(d)),
            Some(Ok(d)) => {
                return bad_request(format!(
                    "eject for {d:?}: must be more than 0 and at most a day (leave ?for= out to eject until undone)"
                ))
            }
            Some(Err(e)) => return bad_request(format!("eject ?for=: {e}")),
            None => return bad_request(format!("eject takes only ?for=<duration>, not {q:?}")),
        },
        (v, "") if !["drain", "undrain", "ready", "eject"].contains(&v) => {
            return bad_request(format!("unknown verb {v:?} (verbs: {VERBS})"))
        }
        (v, q) => return bad_request(format!("{v} takes no parameters, got {q:?}")),
    };
    let current = overrides.load_full();
    let listed = snapshot
        .servers
        .iter()
        .filter(|b| target.names(b.id, b.mac))
        .count();
    // Setting a server ready is always allowed for a target that has an
    // override (it may have left the list since); anything else needs a
    // listed server, so a typo is an error rather than a silent no-op.
    let has_override = current.entries().iter().any(|(t, _)| *t == target);
    if listed == 0 && !(matches!(command, Command::Ready(_)) && has_override) {
        return (
            "404 Not Found",
            format!(
                "no listed server has {target} (list version {}, {} servers; see GET /servers)\n",
                snapshot.version,
                snapshot.len()
            ),
        );
    }
    match current.apply(command, now) {
        Ok(next) => {
            overrides.store(std::sync::Arc::new(next));
            let state = match command {
                Command::Drain(_) => DRAINING.to_owned(),
                Command::Eject(_, None) => format!("{EJECTED_BY_OPERATOR} until set ready"),
                Command::Eject(_, Some(d)) => {
                    format!("{EJECTED_BY_OPERATOR} for {} ms", d.as_millis())
                }
                Command::Ready(_) => "ready".to_owned(),
            };
            tracing::info!(%target, servers = listed, "operator: {state}");
            ("200 OK", format!("{target}: {state} ({listed} listed)\n"))
        }
        Err(e) => ("409 Conflict", format!("{e}\n")),
    }
}

/// `GET /logging`: the log filter in use.
pub fn logging_filter() -> Answer {
    match logging::filter() {
        Some(filter) => ("200 OK", format!("{filter}\n")),
        None => (
            "503 Service Unavailable",
            "no reloadable log filter in this process\n".into(),
        ),
    }
}

fn set_logging(query: &str) -> Answer {
    let Some(level) = query.strip_prefix("level=") else {
        return bad_request("POST /logging?level=<filter> (e.g. debug, info,ipcs_lb=trace)".into());
    };
    let Some(level) = percent_decode(level) else {
        return bad_request(format!("{level:?} is not percent-encoded UTF-8"));
    };
    match logging::set_filter(&level) {
        Ok(()) => {
            tracing::info!(filter = %level, "operator: log filter changed");
            ("200 OK", format!("{level}\n"))
        }
        Err(e @ logging::FilterError::NotInstalled) => {
            ("503 Service Unavailable", format!("{e}\n"))
        }
        Err(e) => bad_request(e.to_string()),
    }
}

fn bad_request(why: String) -> Answer {
    ("400 Bad Request", format!("{why}\n"))
}

/// Decodes `%XX` escapes (curl's `--data-urlencode` style, for filters with
/// `,` or `=`); `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{shared_none, Mode};
    use crate::snapshot::Backend;
    use ipcs_common::wire::MacAddr;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);

    fn snapshot() -> ServerSnapshot {
        let server = Backend {
            id: 3,
            mac: MAC,
            ip: "172.16.238.3".parse().unwrap(),
            udp: None,
        };
        ServerSnapshot::new(1, vec![server])
    }

    #[test]
    fn server_verbs_change_the_shared_table() {
        let shared = shared_none();
        let (list, now) = (snapshot(), Instant::now());
        let status = |path: &str| post(path, &shared, &list, now).0;
        assert_eq!(status("/servers/3/drain"), "200 OK");
        assert_eq!(shared.load().mode_of(3, MAC, now), Some(Mode::Drain));
        assert_eq!(status("/servers/02:00:00:00:00:03/eject?for=30s"), "200 OK");
        let until = Some(now + Duration::from_secs(30));
        assert_eq!(
            shared.load().mode_of(3, MAC, now),
            Some(Mode::Eject { until })
        );
        assert_eq!(status("/servers/02:00:00:00:00:03/ready"), "200 OK");
        assert_eq!(status("/servers/3/undrain"), "200 OK");
        assert_eq!(shared.load().mode_of(3, MAC, now), None);
    }

    #[test]
    fn unknown_servers_and_bad_verbs_are_4xx() {
        let shared = shared_none();
        let (list, now) = (snapshot(), Instant::now());
        let status = |path: &str| post(path, &shared, &list, now).0;
        assert_eq!(status("/servers/9/drain"), "404 Not Found");
        assert_eq!(status("/servers/9/ready"), "404 Not Found");
        assert_eq!(status("/servers/3/explode"), "400 Bad Request");
        assert_eq!(status("/servers/3"), "400 Bad Request");
        assert_eq!(status("/servers/x/drain"), "400 Bad Request");
        assert_eq!(status("/servers/3/drain?now=1"), "400 Bad Request");
        assert_eq!(status("/servers/3/eject?for=soon"), "400 Bad Request");
        assert_eq!(status("/servers/3/eject?for=0s"), "400 Bad Request");
        assert_eq!(status("/servers/3/eject?for=48h"), "400 Bad Request");
        assert_eq!(status("/nope"), "404 Not Found");
        assert!(shared.load().is_empty());
        // A drained server that left the list can still be set ready.
        assert_eq!(status("/servers/3/drain"), "200 OK");
        let empty = ServerSnapshot::new(2, vec![]);
        assert_eq!(post("/servers/3/ready", &shared, &empty, now).0, "200 OK");
        assert!(shared.load().is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("info%2Cipcs_lb%3Ddebug").as_deref(),
            Some("info,ipcs_lb=debug")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(set_logging("lvl=debug").0, "400 Bad Request");
    }
}
