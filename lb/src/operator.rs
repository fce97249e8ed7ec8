//! What the operator said about servers at run time (HAProxy's `set server
//! state drain|maint|ready`): an immutable [`Overrides`] table, replaced
//! whole by the admin thread on each command and read by every worker's
//! core through an [`ArcSwap`], the way the server list is
//! ([`crate::snapshot`]). A worker looks at it before each pick, so a
//! command takes effect with the next request each worker handles.
//!
//! - **drain**: the server gets no new requests and no retries or
//!   failovers; answers to attempts already sent still count (they answer
//!   clients, prove it alive, give round-trip samples).
//! - **eject** (for a while or until undone): the same, under another
//!   name: the operator took it out, as if it were broken (HAProxy's
//!   `maint`).
//! - **ready**: back in rotation.
//!
//! Neither falls back: when every unhealthy server would otherwise still
//! be tried (passive ejection never refuses a request outright), a drained
//! or operator-ejected one is not.
//!
//! Overrides name a server by its id or by its MAC and are kept apart from
//! the server list, so they outlive the server's absence from it: a
//! drained server that misses heartbeats and registers again is still
//! drained. An override by id applies to every server listed with that id
//! (ids need not be unique, MACs are); an override by MAC applies to that
//! one and wins over one by id.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipcs_common::wire::MacAddr;

/// The most overrides kept (every id, and as many MACs): bounded memory
/// whatever the admin endpoint is sent.
pub const MAX_OVERRIDES: usize = 512;

/// How a command names a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Id(u8),
    Mac(MacAddr),
}

impl Target {
    /// `3` (an id) or `02:42:ac:10:ee:03` (a MAC).
    pub fn parse(s: &str) -> Option<Target> {
        if let Ok(id) = s.parse::<u8>() {
            return Some(Target::Id(id));
        }
        s.parse::<MacAddr>().ok().map(Target::Mac)
    }

    /// Whether the server `(id, mac)` is the one named.
    pub fn names(&self, id: u8, mac: MacAddr) -> bool {
        match *self {
            Target::Id(i) => i == id,
            Target::Mac(m) => m == mac,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Id(id) => write!(f, "id {id}"),
            Target::Mac(mac) => write!(f, "mac {mac}"),
        }
    }
}

/// What the operator set for a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No new requests; those in flight finish.
    Drain,
    /// Out of rotation until `until` (`None`: until undone).
    Eject { until: Option<Instant> },
}

impl Mode {
    /// Whether the mode still holds at `now` (a timed ejection lapses).
    pub fn holds(&self, now: Instant) -> bool {
        match self {
            Mode::Drain => true,
            Mode::Eject { until } => until.is_none_or(|u| now < u),
        }
    }
}

/// The state words of an operator's override, as `/servers` and the admin
/// replies show them.
pub const DRAINING: &str = "draining";
pub const EJECTED_BY_OPERATOR: &str = "ejected-by-operator";

/// A command from the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Drain(Target),
    /// `for`: how long; `None` until undone.
    Eject(Target, Option<Duration>),
    /// Back in rotation: clears the target's override.
    Ready(Target),
}

impl Command {
    pub fn target(&self) -> Target {
        match *self {
            Command::Drain(t) | Command::Eject(t, _) | Command::Ready(t) => t,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("too many operator overrides (at most {MAX_OVERRIDES}); set some servers ready first")]
    Full,
}

/// The operator's overrides, replaced whole on each command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Bumped by every change, so readers can tell tables apart.
    pub version: u64,
    entries: Vec<(Target, Mode)>,
}

impl Overrides {
    /// The table after `command` at `now`; timed ejections that lapsed are
    /// forgotten on the way.
    pub fn apply(&self, command: Command, now: Instant) -> Result<Overrides, CommandError> {
        let target = command.target();
        let mut entries: Vec<(Target, Mode)> = self
            .entries
            .iter()
            .filter(|(t, m)| *t != target && m.holds(now))
            .copied()
            .collect();
        let mode = match command {
            Command::Drain(_) => Some(Mode::Drain),
            Command::Eject(_, lasting) => Some(Mode::Eject {
                until: lasting.map(|d| now + d),
            }),
            Command::Ready(_) => None,
        };
        if let Some(mode) = mode {
            if entries.len() >= MAX_OVERRIDES {
                return Err(CommandError::Full);
            }
            entries.push((target, mode));
        }
        Ok(Overrides {
            version: self.version + 1,
            entries,
        })
    }

    /// The mode set for server `(id, mac)` that holds at `now`: by MAC
    /// first, else by id.
    pub fn mode_of(&self, id: u8, mac: MacAddr, now: Instant) -> Option<Mode> {
        let by = |want: Target| {
            self.entries
                .iter()
                .find(|(t, m)| *t == want && m.holds(now))
                .map(|(_, m)| *m)
        };
        by(Target::Mac(mac)).or_else(|| by(Target::Id(id)))
    }

    /// Every override, as set (lapsed ones included until the next change).
    pub fn entries(&self) -> &[(Target, Mode)] {
        &self.entries
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The one shared, swappable table.
pub type SharedOverrides = Arc<ArcSwap<Overrides>>;

/// A shared table with no overrides.
pub fn shared_none() -> SharedOverrides {
    Arc::new(ArcSwap::from_pointee(Overrides::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn targets_parse_as_id_or_mac() {
        assert_eq!(Target::parse("3"), Some(Target::Id(3)));
        assert_eq!(Target::parse("02:00:00:00:00:01"), Some(Target::Mac(A)));
        assert_eq!(Target::parse("256"), None);
        assert_eq!(Target::parse("nope"), None);
    }

    #[test]
    fn drain_eject_and_ready_by_id_and_mac() {
        let t0 = Instant::now();
        let o = Overrides::default();
        let o = o.apply(Command::Drain(Target::Id(1)), t0).unwrap();
        assert_eq!(o.version, 1);
        assert_eq!(o.mode_of(1, A, t0), Some(Mode::Drain));
        // Every server with that id, whatever its MAC (a server that came
        // back with another MAC is still drained).
        assert_eq!(o.mode_of(1, B, t0), Some(Mode::Drain));
        assert_eq!(o.mode_of(2, B, t0), None);
        // By MAC wins over by id.
        let o = o.apply(Command::Eject(Target::Mac(A), None), t0).unwrap();
        assert_eq!(o.mode_of(1, A, t0), Some(Mode::Eject { until: None }));
        assert_eq!(o.mode_of(1, B, t0), Some(Mode::Drain));
        // A second command for the same target replaces the first.
        let o = o.apply(Command::Ready(Target::Mac(A)), t0).unwrap();
        assert_eq!(o.mode_of(1, A, t0), Some(Mode::Drain));
        let o = o.apply(Command::Ready(Target::Id(1)), t0).unwrap();
        assert_eq!(o.mode_of(1, A, t0), None);
        assert!(o.is_empty());
    }

    #[test]
    fn a_timed_ejection_lapses() {
        let t0 = Instant::now();
        let o = Overrides::default()
            .apply(
                Command::Eject(Target::Id(4), Some(Duration::from_secs(30))),
                t0,
            )
            .unwrap();
        let until = Some(t0 + Duration::from_secs(30));
        assert_eq!(o.mode_of(4, A, t0), Some(Mode::Eject { until }));
        assert_eq!(o.mode_of(4, A, t0 + Duration::from_secs(30)), None);
        // Lapsed overrides are dropped at the next change.
        let later = t0 + Duration::from_secs(31);
        let o = o.apply(Command::Drain(Target::Id(5)), later).unwrap();
        assert_eq!(o.entries().len(), 1);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut o = Overrides::default();
        for i in 0..MAX_OVERRIDES {
            let mac = MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]);
            o = o.apply(Command::Drain(Target::Mac(mac)), t0).unwrap();
        }
        let extra = Command::Drain(Target::Id(9));
        assert_eq!(o.apply(extra, t0), Err(CommandError::Full));
        // Replacing or clearing one still works when full.
        let first = Target::Mac(MacAddr([2, 0, 0, 0, 0, 0]));
        assert!(o.apply(Command::Eject(first, None), t0).is_ok());
        assert!(o.apply(Command::Ready(first), t0).is_ok());
    }
}
