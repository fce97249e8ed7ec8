//! The benchmark's table, as text for the terminal and Markdown for
//! `docs/BENCHMARKS.md`.

use std::fmt::Write as _;

use crate::loadgen::Measurement;

/// One scenario's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Short key used in ratios: "A", "B", "C", ...
    pub key: String,
    pub name: String,
    /// Highest rate with >= 99.9 % answered and p99 within the bound.
    pub max_clean_rps: Option<u64>,
    /// The fixed-rate run.
    pub fixed: Option<Measurement>,
    /// CPU seconds the balancer used during the fixed-rate run; `None` for
    /// the direct path.
    pub balancer_cpu_s: Option<f64>,
    /// What went wrong, if the scenario could not be measured.
    pub failure: Option<String>,
    /// Why the scenario was not run at all (e.g. no Docker engine), which
    /// is not a failure of what it measures.
    pub not_run: Option<String>,
    /// What the load balancer's admin endpoint counted during the
    /// fixed-rate run, where it was read (scenario G).
    pub lb_events: Option<LbEvents>,
}

impl Row {
    /// A scenario that was skipped for `reason`.
    pub fn not_run(key: &str, name: String, reason: &str) -> Row {
        Row {
            key: key.to_owned(),
            name,
            max_clean_rps: None,
            fixed: None,
            balancer_cpu_s: None,
            failure: None,
            not_run: Some(reason.to_owned()),
            lb_events: None,
        }
    }
}

/// Counters of `ipcs-lb` over one run: the difference of two readings of
/// its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LbEvents {
    /// `ipcs_lb_ejections_total`: servers taken out of rotation.
    pub ejections: u64,
    /// `ipcs_lb_retries_total`: attempts sent again to another server.
    pub retries: u64,
}

impl LbEvents {
    /// Reads the two counters from a Prometheus text exposition; `None`
    /// when either is missing. Samples with labels are summed.
    pub fn from_metrics(text: &str) -> Option<LbEvents> {
        Some(LbEvents {
            ejections: counter(text, "ipcs_lb_ejections_total")?,
            retries: counter(text, "ipcs_lb_retries_total")?,
        })
    }

    /// The counters of two LBs together (the tier's).
    pub fn plus(self, other: LbEvents) -> LbEvents {
        LbEvents {
            ejections: self.ejections + other.ejections,
            retries: self.retries + other.retries,
        }
    }

    /// What happened between reading `self` and reading `later`.
    pub fn until(self, later: LbEvents) -> LbEvents {
        LbEvents {
            ejections: later.ejections.saturating_sub(self.ejections),
            retries: later.retries.saturating_sub(self.retries),
        }
    }
}

/// The sum of every sample of metric `name` (exactly that family, not
/// `name_bucket` and the like) in Prometheus text, or `None` if it has none.
pub fn counter(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()) {
            if let Ok(v) = v.parse::<f64>() {
                found = Some(found.unwrap_or(0) + v as u64);
            }
        }
    }
    found
}

/// Renders the table in Markdown, followed by the ratios of clean rates.
pub fn markdown(rows: &[Row], fixed_rps: u64) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| | scenario | max clean rps | answered @ {fixed_rps} | p50 us | p99 us | p99.9 us | balancer CPU s |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let clean = r.max_clean_rps.map_or("-".to_owned(), |v| v.to_string());
        let (ans, p50, p99, p999) = match &r.fixed {
            Some(m) => (
                format!("{:.3} %", m.answered_pct()),
                format!("{:.0}", m.p50_us),
                format!("{:.0}", m.p99_us),
                format!("{:.0}", m.p999_us),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let cpu = r
            .balancer_cpu_s
            .map_or("-".to_owned(), |c| format!("{c:.1}"));
        let name = match (&r.failure, &r.not_run) {
            (Some(f), _) => format!("{} (failed: {f})", r.name),
            (None, Some(why)) => format!("{} (not run: {why})", r.name),
            (None, None) => r.name.clone(),
        };
        let _ = writeln!(
            t,
            "| {} | {name} | {clean} | {ans} | {p50} | {p99} | {p999} | {cpu} |",
            r.key
        );
    }
    t.push('\n');
    for (a, b) in [("A", "B"), ("A", "C"), ("D", "E"), ("D", "C"), ("A", "F")] {
        if let Some(ratio) = ratio(rows, a, b) {
            let _ = writeln!(t, "- {a}/{b} (max clean rate): **{ratio:.2}**");
        }
    }
    // The user's path (Docker, loadgen on the host) against the netns
    // topology, and against nginx in front of the same containers.
    if let Some(r) = ratio(rows, "G", "A") {
        let _ = writeln!(t, "- G/A, Docker/netns (max clean rate): **{r:.2}**");
    }
    if let Some(r) = p99_ratio(rows, "G", "A") {
        let _ = writeln!(t, "- G/A, Docker/netns (p99 @ {fixed_rps}): **{r:.2}**");
    }
    if let Some(r) = ratio(rows, "G", "H") {
        let _ = writeln!(
            t,
            "- G/H, IPCS/nginx on Docker (max clean rate): **{r:.2}**"
        );
    }
    // The cost of a second host (every frame through the VXLAN tunnel), and
    // of Swarm's overlay and host-mode port against compose's bridge.
    if let Some(r) = ratio(rows, "I", "A") {
        let _ = writeln!(t, "- I/A, two hosts/one host (max clean rate): **{r:.2}**");
    }
    if let Some(r) = p99_ratio(rows, "I", "A") {
        let _ = writeln!(
            t,
            "- I/A, two hosts/one host (p99 @ {fixed_rps}): **{r:.2}**"
        );
    }
    if let Some(r) = ratio(rows, "J", "G") {
        let _ = writeln!(t, "- J/G, Swarm/compose (max clean rate): **{r:.2}**");
    }
    if let Some(r) = p99_ratio(rows, "J", "G") {
        let _ = writeln!(t, "- J/G, Swarm/compose (p99 @ {fixed_rps}): **{r:.2}**");
    }
    if let Some(e) = rows.iter().find(|r| r.key == "G").and_then(|r| r.lb_events) {
        let _ = writeln!(
            t,
            "- G, the LB during the run at {fixed_rps} rps: **{}** ejections, **{}** retries",
            e.ejections, e.retries
        );
    }
    t
}

/// The ratio of two scenarios' p99 latencies in the fixed-rate run.
pub fn p99_ratio(rows: &[Row], a: &str, b: &str) -> Option<f64> {
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.key == k)
            .and_then(|r| r.fixed.as_ref())
            .map(|m| m.p99_us)
    };
    match (get(a), get(b)) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    }
}

/// The ratio of two scenarios' highest clean rates.
pub fn ratio(rows: &[Row], a: &str, b: &str) -> Option<f64> {
    let get = |k: &str| {
        rows.iter()
            .find(|r| r.key == k)
            .and_then(|r| r.max_clean_rps)
    };
    match (get(a), get(b)) {
        (Some(x), Some(y)) if y > 0 => Some(x as f64 / y as f64),
        _ => None,
    }
}

/// Marker lines between which the generated table lives in the Markdown file.
pub const BEGIN: &str = "<!-- BENCH-TABLE:BEGIN (generated by ipcs-bench) -->";
pub const END: &str = "<!-- BENCH-TABLE:END -->";

/// The generated block: the markers around `summary` and `table`.
pub fn block(summary: &str, table: &str) -> String {
    format!("{BEGIN}\n{summary}\n\n{table}{END}")
}

/// Replaces what stands between the markers of `path` with `block` (from
/// [`block`]), appending it if the file has no markers, keeping the prose
/// around them.
pub fn write_into_markdown(path: &std::path::Path, block: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, replace_block(&old, block))
}

/// `old` with its marked block replaced by `block`.
fn replace_block(old: &str, block: &str) -> String {
    match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("{old}\n{block}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, clean: Option<u64>) -> Row {
        Row {
            key: key.into(),
            name: format!("scenario {key}"),
            max_clean_rps: clean,
            fixed: None,
            balancer_cpu_s: Some(1.5),
            failure: None,
            not_run: None,
            lb_events: None,
        }
    }

    fn with_p99(mut r: Row, p99_us: f64) -> Row {
        r.fixed = Some(Measurement {
            sent: 1000,
            answered: 1000,
            p99_us,
            ..Measurement::default()
        });
        r
    }

    #[test]
    fn table_has_a_row_per_scenario_and_ratios() {
        let rows = vec![
            row("A", Some(150_000)),
            row("B", Some(50_000)),
            row("C", Some(200_000)),
        ];
        let md = markdown(&rows, 100_000);
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| A") || l.starts_with("| B") || l.starts_with("| C"))
                .count(),
            3
        );
        assert!(md.contains("A/B (max clean rate): **3.00**"));
        assert!(md.contains("A/C (max clean rate): **0.75**"));
        assert_eq!(ratio(&rows, "A", "D"), None);
    }

    #[test]
    fn the_block_replaces_only_what_stands_between_the_markers() {
        let old = format!("# T\n\nprose\n{}\nold table\n{END}\nmore prose\n", BEGIN);
        let new = replace_block(&old, &block("summary", "| new |\n"));
        assert_eq!(
            new,
            format!("# T\n\nprose\n{BEGIN}\nsummary\n\n| new |\n{END}\nmore prose\n")
        );
        assert_eq!(
            replace_block("# T\n", "B"),
            "# T\n\nB\n",
            "no markers: the block is appended"
        );
    }

    #[test]
    fn docker_ratios_and_lb_events_are_shown() {
        let mut g = with_p99(row("G", Some(90_000)), 600.0);
        g.lb_events = Some(LbEvents {
            ejections: 0,
            retries: 7,
        });
        let rows = vec![
            with_p99(row("A", Some(300_000)), 400.0),
            row("B", Some(75_000)),
            g,
            row("H", Some(45_000)),
        ];
        let md = markdown(&rows, 100_000);
        assert!(md.contains("A/B (max clean rate): **4.00**"), "{md}");
        assert!(
            md.contains("G/A, Docker/netns (max clean rate): **0.30**"),
            "{md}"
        );
        assert!(
            md.contains("G/A, Docker/netns (p99 @ 100000): **1.50**"),
            "{md}"
        );
        assert!(
            md.contains("G/H, IPCS/nginx on Docker (max clean rate): **2.00**"),
            "{md}"
        );
        assert!(md.contains("**0** ejections, **7** retries"), "{md}");
        // H has no fixed run, so no p99 ratio can involve it.
        assert_eq!(p99_ratio(&rows, "G", "H"), None);
    }

    #[test]
    fn scenarios_not_run_say_why_and_give_no_ratios() {
        let rows = vec![
            row("A", Some(300_000)),
            Row::not_run("G", "IPCS in Docker".into(), "no Docker engine"),
            Row::not_run("H", "nginx in Docker".into(), "no Docker engine"),
        ];
        let md = markdown(&rows, 100_000);
        assert!(
            md.contains("| G | IPCS in Docker (not run: no Docker engine) | - |"),
            "{md}"
        );
        assert!(
            md.contains("| H | nginx in Docker (not run: no Docker engine) | - |"),
            "{md}"
        );
        assert!(!md.contains("G/A"), "{md}");
        assert!(!md.contains("G/H"), "{md}");
        assert!(!md.contains("ejections"), "{md}");
    }

    #[test]
    fn lb_counters_are_read_from_metrics_and_differenced() {
        let before = "# HELP ipcs_lb_retries_total Attempts sent again.\n\
                      # TYPE ipcs_lb_retries_total counter\n\
                      ipcs_lb_retries_total 12\n\
                      ipcs_lb_retries_over_budget_total 99\n\
                      ipcs_lb_ejections_total 1\n\
                      ipcs_lb_server_ejections_total{id=\"2\",mac=\"aa\"} 5\n";
        let after = "ipcs_lb_retries_total 30\nipcs_lb_ejections_total 1\n";
        let b = LbEvents::from_metrics(before).unwrap();
        assert_eq!(
            b,
            LbEvents {
                ejections: 1,
                retries: 12
            }
        );
        let d = b.until(LbEvents::from_metrics(after).unwrap());
        assert_eq!(
            d,
            LbEvents {
                ejections: 0,
                retries: 18
            }
        );
        assert_eq!(
            counter("x{a=\"1\"} 2\nx{a=\"2\"} 3\nx_bucket 9\n", "x"),
            Some(5)
        );
        assert_eq!(LbEvents::from_metrics("ipcs_lb_retries_total 3\n"), None);
    }
}
