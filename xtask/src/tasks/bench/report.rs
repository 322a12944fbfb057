//! The bench's reports: a table for people and JSON for programs, under target/bench/.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::steps::smoke::REQUEST;
use crate::steps::wrk::Figures;
use crate::tasks::bench::figures::{
    ALTERNATIONS, Bench, ContainerFigures, FLOOR, Measurement, SERVICE, TIMED_ROWS,
};
use crate::tasks::bench::rows::{DISTINCT_ROWS, TIMED_POOL_ROWS};

/// Where the reports, the servers' logs and the generated rows go.
pub(super) const REPORT_DIR: &str = "target/bench";

pub(super) fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("a file in a directory")?)?;
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))
}

/// The median over rounds of the service's requests per second over the floor's, from
/// the alternation's figures in the order they were measured.
fn alternating_ratio(rounds: &[(&str, f64)]) -> Option<f64> {
    fn figures<'r>(rounds: &'r [(&str, f64)], name: &'static str) -> impl Iterator<Item = f64> + 'r {
        rounds
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, rps)| *rps)
    }
    let mut ratios: Vec<f64> = figures(rounds, SERVICE)
        .zip(figures(rounds, FLOOR))
        .filter(|(_, floor)| *floor > 0.0)
        .map(|(ours, floor)| ours / floor)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied()
}

fn cores() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

#[derive(Serialize)]
struct EchoReport<'a> {
    connections: u32,
    duration_seconds: u32,
    load_generator: &'static str,
    cores: usize,
    results: &'a [Measurement],
    container: &'a ContainerFigures,
    /// The service's requests per second over a bare hyper server's, the median over
    /// rounds of the two loaded in turn: what parsing, routing, limits and metrics cost.
    ratio_vs_hyper_floor: f64,
    /// Each round's requests per second, in the order measured.
    alternation: Vec<(&'static str, f64)>,
    ratio_vs_flask_dev: f64,
    ratio_vs_gunicorn: f64,
}

/// A measurement's figures as table cells: requests/s, p50, p99, peak RSS, errors.
fn figure_cells(m: &Measurement) -> String {
    let Figures {
        requests_per_second,
        p50_ms,
        p99_ms,
        errors,
    } = m.figures;
    format!(
        "{requests_per_second:.0} | {p50_ms:.3} | {p99_ms:.3} | {:.1} | {errors}",
        m.peak_rss_mib
    )
}

pub(super) fn echo_report(bench: &Bench, connections: u32, duration: u32) -> anyhow::Result<()> {
    let results = &bench.measurements;
    let find = |name: &str| {
        results
            .iter()
            .find(|m| m.server == name)
            .with_context(|| format!("no measurement for {name}"))
    };
    let ours = find(SERVICE)?.figures.requests_per_second;
    let ratio_vs_hyper_floor = alternating_ratio(&bench.alternation)
        .context("the service and the floor were not measured in turn")?;
    let ratio_vs_flask_dev = ours / find("flask-dev-server")?.figures.requests_per_second;
    let ratio_vs_gunicorn = ours / find("gunicorn-2-workers")?.figures.requests_per_second;

    let mut table = format!(
        "POST /score {REQUEST}, wrk with 2 threads and {connections} connections for {duration}s each, \
         on {} cores shared with the load generator.\n\n\
         | server | requests/s | p50 (ms) | p99 (ms) | peak RSS (MiB) | errors |\n|---|---:|---:|---:|---:|---:|\n",
        cores()
    );
    for m in results {
        let _ = writeln!(table, "| {} | {} |", m.server, figure_cells(m));
    }
    let _ = writeln!(
        table,
        "\nscore-service vs the bare hyper floor (same runtime, no parsing), median of {ALTERNATIONS} rounds loading the two in turn: {ratio_vs_hyper_floor:.3}x (rounds: {}); vs Flask dev server: {ratio_vs_flask_dev:.1}x; vs gunicorn with 2 workers: {ratio_vs_gunicorn:.1}x",
        bench
            .alternation
            .iter()
            .map(|(name, rps)| format!("{name} {rps:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let container = &bench.container;
    let _ = writeln!(
        table,
        "\nImage: {:.1} MiB. Container start (`docker run` to the first 200 from /readyz), median of {}: {:.0} ms (runs: {}).",
        container.image_size_mib,
        container.start_to_ready_ms.len(),
        container.median_start_to_ready_ms,
        container
            .start_to_ready_ms
            .iter()
            .map(|ms| format!("{ms:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("\n{table}");
    let json = serde_json::to_string_pretty(&EchoReport {
        connections,
        duration_seconds: duration,
        load_generator: "wrk",
        cores: cores(),
        results,
        container,
        ratio_vs_hyper_floor,
        alternation: bench.alternation.clone(),
        ratio_vs_flask_dev,
        ratio_vs_gunicorn,
    })?;
    write_file(&Path::new(REPORT_DIR).join("report.md"), &table)?;
    write_file(&Path::new(REPORT_DIR).join("report.json"), &json)
}

pub(super) fn model_report(bench: &Bench, connections: u32, duration: u32) -> anyhow::Result<()> {
    let mut models: Vec<&str> = bench.timings.iter().map(|t| t.model.as_str()).collect();
    models.dedup();
    let mut table = format!(
        "Models, on {} cores. Time per run with no HTTP: score-service's own (service/examples/model_timing.rs) and onnxruntime's with one intra-op thread, median of 7 trials, each run a new batch from the same {TIMED_POOL_ROWS} distinct rows. Then wrk with 2 threads and {connections} connections for {duration}s per row, beside the load generator, each request the next body of {DISTINCT_ROWS} distinct rows in turn.\n",
        cores()
    );
    for model in models {
        let _ = writeln!(
            table,
            "\n### {model}\n\n| rows | score-service µs/run | µs/row | onnxruntime (1 thread) µs/run | µs/row | ratio |\n|---:|---:|---:|---:|---:|---:|"
        );
        for rows in TIMED_ROWS {
            let time = |runtime: &str| {
                bench
                    .timings
                    .iter()
                    .find(|t| t.model == model && t.rows == rows && t.runtime.starts_with(runtime))
                    .map(|t| t.median_us)
            };
            if let (Some(ours), Some(theirs)) = (time("score-service"), time("onnxruntime")) {
                let per_row = |us: f64| us / rows as f64;
                let _ = writeln!(
                    table,
                    "| {rows} | {ours:.1} | {:.2} | {theirs:.1} | {:.2} | {:.2}x |",
                    per_row(ours),
                    per_row(theirs),
                    ours / theirs
                );
            }
        }
        let _ = writeln!(
            table,
            "\n| request | server | requests/s | p50 (ms) | p99 (ms) | peak RSS (MiB) | errors | score-service / this |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        let ours = |load: &str| {
            bench
                .measurements
                .iter()
                .find(|m| m.model == model && m.server == "score-service" && m.load == load)
                .map(|m| m.figures.requests_per_second)
        };
        for m in bench.measurements.iter().filter(|m| m.model == model) {
            let ratio = match ours(&m.load) {
                Some(ours) if m.server != "score-service" => {
                    format!("{:.1}x", ours / m.figures.requests_per_second)
                }
                _ => "—".into(),
            };
            let _ = writeln!(
                table,
                "| {} | {} | {} | {ratio} |",
                m.load,
                m.server,
                figure_cells(m)
            );
        }
    }
    println!("\n{table}");
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "connections": connections, "duration_seconds": duration, "cores": cores(),
        "timings": bench.timings, "results": bench.measurements,
    }))?;
    write_file(&Path::new(REPORT_DIR).join("model-report.md"), &table)?;
    write_file(&Path::new(REPORT_DIR).join("model-report.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_ratio_is_the_median_of_the_rounds_ratios() {
        // A neighbour's burst in round 2 hits the service alone; the median ignores it.
        let rounds = [
            (SERVICE, 90.0),
            (FLOOR, 100.0),
            (SERVICE, 40.0),
            (FLOOR, 100.0),
            (SERVICE, 95.0),
            (FLOOR, 100.0),
        ];
        assert_eq!(alternating_ratio(&rounds), Some(0.9));
        assert_eq!(alternating_ratio(&rounds[..1]), None, "no pair");
    }
}
