//! One way to set up `tracing` for every IPCS process: human-readable lines on
//! stderr, level from `RUST_LOG` (default `info`), changeable while the
//! process runs ([`set_filter`], which the LB's admin endpoint offers as
//! `POST /logging?level=`).
//!
//! The filter sits behind `tracing-subscriber`'s reload layer. Its cost is
//! paid where a callsite's interest is decided, not per event: `tracing`
//! caches each callsite's interest and the reload rebuilds that cache, so a
//! disabled `debug!` on a hot path stays one relaxed load.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// The installed filter's handle and its directives as last set.
struct Installed {
    handle: FilterHandle,
    directives: std::sync::Mutex<String>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The longest filter [`set_filter`] takes (it comes from the network).
pub const MAX_FILTER_LEN: usize = 256;

/// Why a filter could not be set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("no log filter is installed in this process")]
    NotInstalled,
    #[error("log filter longer than {MAX_FILTER_LEN} bytes")]
    TooLong,
    #[error("bad log filter {0:?}: {1}")]
    Invalid(String, String),
    #[error("cannot reload the log filter: {0}")]
    Reload(String),
}

/// The filter a process starts with, and its text: `RUST_LOG` when it is
/// set and valid, else `info`. (An empty string parses as a filter that
/// lets nothing through, so unset and empty must not reach the parser.)
fn start_filter(rust_log: Option<&str>) -> (EnvFilter, String) {
    match rust_log.filter(|d| !d.trim().is_empty()) {
        Some(d) => match EnvFilter::try_new(d) {
            Ok(filter) => (filter, d.to_owned()),
            Err(_) => (EnvFilter::new("info"), "info".to_owned()),
        },
        None => (EnvFilter::new("info"), "info".to_owned()),
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls
/// are ignored), so tests that drive a binary's library may call it too.
pub fn init() {
    let (filter, shown) = start_filter(std::env::var("RUST_LOG").ok().as_deref());
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                // Colour codes only for a person at a terminal, not in log files.
                .with_ansi(std::io::stderr().is_terminal())
                .with_target(false),
        )
        .try_init()
        .is_ok();
    if installed {
        let _ = INSTALLED.set(Installed {
            handle,
            directives: std::sync::Mutex::new(shown),
        });
    }
}

/// Replaces the filter of the subscriber [`init`] installed with
/// `directives` (`RUST_LOG` syntax: `debug`, `info,ipcs_lb=trace`, ...).
pub fn set_filter(directives: &str) -> Result<(), FilterError> {
    let installed = INSTALLED.get().ok_or(FilterError::NotInstalled)?;
    if directives.len() > MAX_FILTER_LEN {
        return Err(FilterError::TooLong);
    }
    let filter = EnvFilter::try_new(directives)
        .map_err(|e| FilterError::Invalid(directives.to_owned(), e.to_string()))?;
    installed
        .handle
        .reload(filter)
        .map_err(|e| FilterError::Reload(e.to_string()))?;
    *installed
        .directives
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = directives.to_owned();
    Ok(())
}

/// The filter's directives as last set, if [`init`] installed one.
pub fn filter() -> Option<String> {
    INSTALLED.get().map(|i| {
        i.directives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn without_rust_log_the_level_is_info() {
        for unset in [None, Some(""), Some("  "), Some("not==a filter")] {
            let (filter, shown) = start_filter(unset);
            assert_eq!(
                filter.max_level_hint(),
                Some(LevelFilter::INFO),
                "{unset:?}"
            );
            assert_eq!(shown, "info");
        }
        let (filter, shown) = start_filter(Some("debug"));
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
        assert_eq!(shown, "debug");
    }

    #[test]
    fn a_bad_or_long_filter_is_refused_and_a_good_one_taken() {
        init();
        // Another test binary may have installed a subscriber first; then
        // there is nothing to reload, and saying so is the right answer.
        if INSTALLED.get().is_none() {
            assert_eq!(set_filter("debug"), Err(FilterError::NotInstalled));
            return;
        }
        assert!(matches!(
            set_filter("info,[{"),
            Err(FilterError::Invalid(..))
        ));
        let long = "a".repeat(MAX_FILTER_LEN + 1);
        assert_eq!(set_filter(&long), Err(FilterError::TooLong));
        set_filter("debug").unwrap();
        assert_eq!(filter().as_deref(), Some("debug"));
        set_filter("info").unwrap();
        assert_eq!(filter().as_deref(), Some("info"));
    }
}
