//! Running `loadgen` and reading its `--json` report.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// Why a loadgen run gave no usable figures.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("could not run loadgen: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("loadgen exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("loadgen's report is not the JSON expected ({0}): {1}")]
    Report(String, String),
}

/// The figures of one fixed-rate run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub offered_rps: f64,
    pub achieved_rps: f64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub wrong: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Correct replies per server id.
    pub per_server: BTreeMap<u8, u64>,
    /// Scheduled times (into the measured phase) of the first and the last
    /// lost request; `None` when nothing was lost.
    pub loss_window: Option<(Duration, Duration)>,
}

impl Measurement {
    /// Share of sent requests that got a correct answer, in percent.
    pub fn answered_pct(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * self.answered as f64 / self.sent as f64
        }
    }

    /// Reads loadgen's `--json` object.
    pub fn from_json(v: &Value) -> Result<Measurement, String> {
        let num = |path: &[&str]| -> Result<f64, String> {
            let mut cur = v;
            for key in path {
                cur = cur
                    .get(key)
                    .ok_or_else(|| format!("missing {}", path.join(".")))?;
            }
            cur.as_f64()
                .ok_or_else(|| format!("{} is not a number", path.join(".")))
        };
        let errors = v
            .get("errors")
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_u64).sum())
            .unwrap_or(0);
        Ok(Measurement {
            offered_rps: num(&["offered_rps"])?,
            achieved_rps: num(&["achieved_rps"])?,
            sent: num(&["sent"])? as u64,
            answered: num(&["answered"])? as u64,
            lost: num(&["lost"])? as u64,
            wrong: num(&["wrong"])? as u64,
            errors,
            p50_us: num(&["latency_us", "p50"])?,
            p99_us: num(&["latency_us", "p99"])?,
            p999_us: num(&["latency_us", "p999"])?,
            max_us: num(&["latency_us", "max"])?,
            per_server: v
                .get("per_server")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_u64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            loss_window: v.get("loss_window").and_then(|w| {
                let s = |k: &str| w.get(k)?.as_f64().map(Duration::from_secs_f64);
                Some((s("first_s")?, s("last_s")?))
            }),
        })
    }
}

/// How to run loadgen: its path and the namespace command prefix.
#[derive(Debug, Clone)]
pub struct Loadgen {
    pub program: PathBuf,
    /// `ip netns exec <core>` when the target is inside a namespace.
    pub netns: Option<String>,
    pub sockets: u32,
    pub threads: u32,
}

impl Loadgen {
    fn command(&self) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        c.args(["--quiet", "--json"])
            .args(["--sockets", &self.sockets.to_string()])
            .args(["--threads", &self.threads.to_string()]);
        c
    }

    /// A fixed-rate run; writes the latency distribution to `hgrm`.
    pub fn fixed(
        &self,
        target: SocketAddr,
        rps: u64,
        duration: Duration,
        hgrm: &Path,
    ) -> Result<Measurement, LoadgenError> {
        let mut c = self.command();
        c.args(["--rps", &rps.to_string()])
            .args(["--duration", &format!("{}s", duration.as_secs())])
            .args(["--warmup", "1s"])
            .arg("--hgrm")
            .arg(hgrm)
            .arg(target.to_string());
        let v = run_json(c)?;
        Measurement::from_json(&v).map_err(|e| LoadgenError::Report(e, v.to_string()))
    }

    /// `--find-max` with the clean-rate bound (and at most `max_rps`
    /// offered); the highest rate that held.
    pub fn find_max(
        &self,
        target: SocketAddr,
        start_rps: u64,
        max_rps: Option<u64>,
        p99_max: Duration,
        save_to: &Path,
    ) -> Result<u64, LoadgenError> {
        let mut c = self.command();
        c.arg("--find-max")
            .args(["--start-rps", &start_rps.to_string()]);
        if let Some(max) = max_rps {
            c.args(["--max-rps", &max.to_string()]);
        }
        c.args(["--p99-max", &format!("{}us", p99_max.as_micros())])
            .arg(target.to_string());
        let v = run_json(c)?;
        // Every step's figures, for a reader who wants to see why a rate failed.
        let _ = std::fs::write(save_to, v.to_string());
        let report = v
            .get("find_max")
            .ok_or_else(|| LoadgenError::Report("missing find_max".into(), v.to_string()))?;
        // best_rps is null when not even the start rate held.
        Ok(report
            .get("best_rps")
            .and_then(Value::as_f64)
            .map_or(0, |r| r as u64))
    }
}

fn run_json(mut c: Command) -> Result<Value, LoadgenError> {
    let out = c.output()?;
    // Exit status 1 means wrong answers were seen; the JSON still says so.
    let stdout = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Value>(stdout.trim()) {
        Ok(v) => Ok(v),
        Err(_) => Err(LoadgenError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(2000)
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loadgen_report() {
        let v: Value = serde_json::from_str(
            r#"{"offered_rps":100000,"achieved_rps":99990.5,"sent":1000,"answered":998,"lost":1,"wrong":0,
                "errors":{"4":1},"per_server":{"11":500,"12":498},"latency_us":{"p50":20,"p90":30,"p99":80.5,"p999":200,"p9999":300,"max":900}}"#,
        )
        .unwrap();
        let m = Measurement::from_json(&v).unwrap();
        assert_eq!(m.answered, 998);
        assert_eq!(m.errors, 1);
        assert_eq!(m.per_server.get(&12), Some(&498));
        assert_eq!(m.p99_us, 80.5);
        assert!((m.answered_pct() - 99.8).abs() < 1e-9);
        assert_eq!(m.loss_window, None);
        let v: Value = serde_json::from_str(
            r#"{"offered_rps":1,"achieved_rps":1,"sent":1,"answered":1,"lost":2,"wrong":0,"errors":{},
                "loss_window":{"first_s":1.5,"last_s":1.625,"span_ms":125},
                "latency_us":{"p50":1,"p99":1,"p999":1,"max":1}}"#,
        )
        .unwrap();
        let w = Measurement::from_json(&v).unwrap().loss_window.unwrap();
        assert_eq!(
            w,
            (Duration::from_millis(1500), Duration::from_millis(1625))
        );
        let broken: Value = serde_json::from_str(r#"{"sent":1}"#).unwrap();
        assert!(Measurement::from_json(&broken).is_err());
    }
}
