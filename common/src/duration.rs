//! The one parser of human durations on IPCS command lines (`20ms`, `10s`,
//! `100us`, `2m`, `1h`; a bare number only for zero), the `value_parser` of
//! every time-valued flag of the five binaries, so all read the same
//! spellings.

use std::time::Duration;

/// The longest duration accepted: a day, far beyond any run or delay.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Why a text is not a duration. The messages say what was expected, as
/// clap shows them verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration (e.g. 20ms, 10s, 2m, 1h)")]
    Syntax(String),
    #[error("`{0}` has no unit (e.g. 20ms, 10s; only 0 may go without)")]
    NoUnit(String),
    #[error("unknown unit `{unit}` in `{text}` (use us, ms, s, m or h)")]
    Unit { unit: String, text: String },
    #[error("`{0}` is out of range (at most a day)")]
    Range(String),
}

/// Parses `1.5s`, `250ms`, `100us`, `2m`, `1h` or a bare `0` (surrounding
/// whitespace ignored), up to [`MAX_DURATION`]. Any other bare number is
/// refused: `--timeout 20` could mean 20 ms (the old `--timeout-ms`) as
/// well as 20 s.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::Syntax(text.to_owned()))?;
    let scale = match unit.trim() {
        "" if value == 0.0 => 1.0,
        "" => return Err(DurationError::NoUnit(text.trim().to_owned())),
        "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(DurationError::Unit {
                unit: other.to_owned(),
                text: text.to_owned(),
            })
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| DurationError::Range(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 30ms\n"), Ok(Duration::from_millis(30)));
        for bad in [
            "",
            "s",
            "ten",
            "5d",
            "-1s",
            "25h",
            "10",
            "20",
            "1e99",
            "3 parsecs",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_what_was_expected() {
        assert_eq!(
            parse_duration("ten").unwrap_err().to_string(),
            "`ten` is not a duration (e.g. 20ms, 10s, 2m, 1h)"
        );
        assert!(parse_duration("5x")
            .unwrap_err()
            .to_string()
            .contains("use us, ms, s, m or h"));
        assert!(parse_duration("2d")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("20")
            .unwrap_err()
            .to_string()
            .contains("has no unit"));
        assert!(parse_duration("90000s")
            .unwrap_err()
            .to_string()
            .contains("at most a day"));
    }
}
