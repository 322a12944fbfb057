//! Load from wrk, and its report read back.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;
use xshell::{Shell, cmd};

use crate::core::plan::Plan;

/// How a bench drives every server: with two wrk threads (with one, wrk saturates its
/// core before our server does: measured here, ~97k against ~130k requests/s; the
/// Python servers are unaffected), `connections` open, for 2 s to warm up and
/// `duration_s` to measure.
pub(crate) struct Wrk {
    pub(crate) connections: u32,
    pub(crate) duration_s: u32,
}

/// Where a failed wrk run sends the reader.
const NEXT: &str = "check the server's log under target/bench/";

impl Wrk {
    /// Adds a warm-up run, its figures ignored.
    pub(crate) fn add_warm_up<'a, C>(&self, sh: &'a Shell, plan: &mut Plan<'a, C>, script: &Path, url: &str) {
        let connections = self.connections.to_string();
        plan.read(
            cmd!(
                sh,
                "wrk --threads 2 --connections {connections} --duration 2s --script {script} {url}"
            ),
            NEXT,
            |_, _| Ok(()),
        );
    }

    /// Adds a measured run; `on_figures` gets what wrk reported.
    pub(crate) fn add_run<'a, C>(
        &self,
        sh: &'a Shell,
        plan: &mut Plan<'a, C>,
        script: &Path,
        url: &str,
        on_figures: impl FnOnce(&mut C, Figures) -> anyhow::Result<()> + 'a,
    ) {
        let connections = self.connections.to_string();
        let duration = format!("{}s", self.duration_s);
        plan.read(
            cmd!(sh, "wrk --threads 2 --connections {connections} --duration {duration} --latency --script {script} {url}"),
            NEXT,
            move |context, output| on_figures(context, parse_wrk(&output)?),
        );
    }
}

/// What one wrk run with `--latency` reports.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Figures {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    /// Non-2xx answers plus socket errors: a fast server that fails requests is not fast.
    pub(crate) errors: u64,
}

/// Reads requests/s, p50, p99 and errors from wrk's `--latency` report.
pub(crate) fn parse_wrk(output: &str) -> anyhow::Result<Figures> {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_second: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{output}"))?;
    let latency = |percentile: &str| -> anyhow::Result<f64> {
        let text = field(percentile)
            .with_context(|| format!("no {percentile} latency in wrk's output:\n{output}"))?;
        parse_duration_ms(text)
    };
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = field("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Figures {
        requests_per_second,
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        errors: non_2xx + socket_errors,
    })
}

/// wrk prints latencies as `612.00us`, `1.20ms` or `2.01s`.
fn parse_duration_ms(text: &str) -> anyhow::Result<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a wrk latency"))?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => bail!("{text:?} has an unknown unit"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 10s test @ http://127.0.0.1:5000/score
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.33us  101.20us   5.01ms   90.00%
    Req/Sec    98.01k     2.00k  101.00k    70.00%
  Latency Distribution
     50%  600.00us
     75%  650.00us
     90%  700.00us
     99%    1.20ms
  980100 requests in 10.00s, 100.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  98010.00
Transfer/sec:     10.00MB
";

    #[test]
    fn wrk_reports_are_read() {
        let m = parse_wrk(WRK_OUTPUT).unwrap();
        assert_eq!(m.requests_per_second, 98010.0);
        assert_eq!((m.p50_ms, m.p99_ms), (0.6, 1.2));
        assert_eq!(m.errors, 12);
    }

    #[test]
    fn wrk_latency_units() {
        assert_eq!(parse_duration_ms("2.5s").unwrap(), 2500.0);
        assert_eq!(parse_duration_ms("250.00us").unwrap(), 0.25);
        assert!(parse_duration_ms("3 weeks").is_err());
    }
}
