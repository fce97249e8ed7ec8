//! The registry's counters and their names, in one place. The reactor counts;
//! `STATS` reports every counter as a `STAT <name> <value>` line, so tests
//! and operators (`echo STATS | nc host 7070`) see the same numbers.

/// Connections open now (gauge).
pub const CONNECTIONS_OPEN: &str = "connections_open";
/// Servers registered now (gauge).
pub const SERVERS: &str = "servers";
/// Current list version (gauge).
pub const VERSION: &str = "version";
/// Connections accepted since start.
pub const CONNECTIONS_ACCEPTED: &str = "connections_accepted_total";
/// Connections refused because `--max-connections` were open.
pub const CONNECTIONS_REFUSED: &str = "connections_refused_total";
/// Connections closed for sending a line over `--max-line-bytes`.
pub const LINES_TOO_LONG: &str = "lines_too_long_total";
/// Lines that did not parse or were not allowed in the connection's state.
pub const BAD_LINES: &str = "bad_lines_total";
/// Connections closed for sending no valid line within `--first-line-timeout`.
pub const FIRST_LINE_TIMEOUTS: &str = "first_line_timeouts_total";
/// Connections closed because their unsent output exceeded `--max-output-bytes`.
pub const OUTPUT_OVERFLOWS: &str = "output_overflows_total";
/// `HELLO`s refused because the source address is outside `--allow`.
pub const HELLO_NOT_ALLOWED: &str = "hello_not_allowed_total";
/// `HELLO`s refused because the id belongs to another MAC.
pub const HELLO_ID_TAKEN: &str = "hello_id_taken_total";
/// `HELLO`s refused because `--max-servers` are registered.
pub const HELLO_TABLE_FULL: &str = "hello_table_full_total";
/// Registrations accepted (including replacements).
pub const REGISTRATIONS: &str = "registrations_total";
/// Registrations removed for missing beats.
pub const EXPIRED: &str = "expired_total";
/// `BEAT`s received on registered connections.
pub const BEATS: &str = "beats_total";
/// Server lists sent (answers to `LIST` and `WATCH`).
pub const LISTS_SENT: &str = "lists_sent_total";

/// Event counters (gauges are read from the reactor's state when reported).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub lines_too_long: u64,
    pub bad_lines: u64,
    pub first_line_timeouts: u64,
    pub output_overflows: u64,
    pub hello_not_allowed: u64,
    pub hello_id_taken: u64,
    pub hello_table_full: u64,
    pub registrations: u64,
    pub expired: u64,
    pub beats: u64,
    pub lists_sent: u64,
}

impl Counters {
    /// Every counter with its name, for `STATS`.
    pub fn named(&self) -> [(&'static str, u64); 13] {
        [
            (CONNECTIONS_ACCEPTED, self.connections_accepted),
            (CONNECTIONS_REFUSED, self.connections_refused),
            (LINES_TOO_LONG, self.lines_too_long),
            (BAD_LINES, self.bad_lines),
            (FIRST_LINE_TIMEOUTS, self.first_line_timeouts),
            (OUTPUT_OVERFLOWS, self.output_overflows),
            (HELLO_NOT_ALLOWED, self.hello_not_allowed),
            (HELLO_ID_TAKEN, self.hello_id_taken),
            (HELLO_TABLE_FULL, self.hello_table_full),
            (REGISTRATIONS, self.registrations),
            (EXPIRED, self.expired),
            (BEATS, self.beats),
            (LISTS_SENT, self.lists_sent),
        ]
    }
}
