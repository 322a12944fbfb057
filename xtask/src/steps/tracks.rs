//! The two tracks of a canary release, as the analysis sees them: what each pod's
//! `/metrics` says about the requests it answered (read before and after the window),
//! the figures that come of the difference, and the verdict with the thresholds that
//! decided it. Pure data and arithmetic: reading the pods is the canary step's.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The routes that run the model: what the analysis compares.
const MODEL_ROUTES: [&str; 2] = ["/score", "/v2/models/{name}/infer"];

/// What one pod's `/metrics` said: its model routes' answers by status, and their
/// latency histogram's cumulative counts by upper bound.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) by_status: BTreeMap<u16, f64>,
    /// (upper bound in seconds, cumulative count), the `+Inf` bucket last.
    pub(crate) buckets: Vec<(f64, f64)>,
}

impl Snapshot {
    /// Reads the Prometheus text of a pod's `/metrics`.
    pub(crate) fn parse(text: &str) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&format!("{key}=\"")))
                    .map(|rest| rest.trim_end_matches('}').trim_end_matches('"'))
            };
            if !label("route").is_some_and(|route| MODEL_ROUTES.contains(&route)) {
                continue;
            }
            match name {
                "http_requests_total" => {
                    if let Some(status) = label("status").and_then(|s| s.parse().ok()) {
                        *snapshot.by_status.entry(status).or_default() += value;
                    }
                }
                "http_request_duration_seconds_bucket" => {
                    let bound = match label("le") {
                        Some("+Inf") => f64::INFINITY,
                        Some(le) => le.parse().unwrap_or(f64::INFINITY),
                        None => continue,
                    };
                    let entry = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
                    entry.1 += value;
                }
                _ => {}
            }
        }
        snapshot.buckets = buckets.into_values().collect();
        snapshot.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        snapshot
    }

    /// The sum of several pods' snapshots.
    pub(crate) fn sum<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> Snapshot {
        let mut total = Snapshot::default();
        for snapshot in snapshots {
            for (status, count) in &snapshot.by_status {
                *total.by_status.entry(*status).or_default() += count;
            }
            for (bound, count) in &snapshot.buckets {
                match total.buckets.iter_mut().find(|(b, _)| b == bound) {
                    Some(bucket) => bucket.1 += count,
                    None => total.buckets.push((*bound, *count)),
                }
            }
        }
        total.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        total
    }

    /// What a track's pods counted over the window: each pod's own difference (`before`
    /// and `after` in the same pod order), summed.
    pub(crate) fn window(before: &[Snapshot], after: &[Snapshot]) -> Snapshot {
        let each: Vec<Snapshot> = after
            .iter()
            .zip(before)
            .map(|(now, then)| now.since(then))
            .collect();
        Snapshot::sum(&each)
    }

    /// What one pod counted between `before` and `self`. A counter below its earlier value
    /// means the pod restarted in between and counted from zero again: then all it counted
    /// is in the window (as Prometheus' `increase` takes it).
    pub(crate) fn since(&self, before: &Snapshot) -> Snapshot {
        let fell = self.by_status.iter().any(|(status, count)| {
            before
                .by_status
                .get(status)
                .is_some_and(|earlier| count < earlier)
        }) || self.buckets.iter().any(|(bound, count)| {
            before
                .buckets
                .iter()
                .any(|(b, earlier)| b == bound && count < earlier)
        }) || before
            .by_status
            .keys()
            .any(|status| !self.by_status.contains_key(status));
        if fell {
            return self.clone();
        }
        let by_status = self
            .by_status
            .iter()
            .map(|(status, count)| (*status, count - before.by_status.get(status).unwrap_or(&0.0)))
            .collect();
        let buckets = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, count - earlier)
            })
            .collect();
        Snapshot { by_status, buckets }
    }
}

/// One track's figures over the window.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Figures {
    pub(crate) requests: f64,
    pub(crate) per_second: f64,
    pub(crate) client_errors: f64,
    pub(crate) server_errors: f64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl Figures {
    pub(crate) fn of(window: &Snapshot, duration: Duration) -> Figures {
        let count = |range: std::ops::Range<u16>| -> f64 {
            window
                .by_status
                .iter()
                .filter(|(status, _)| range.contains(status))
                .map(|(_, count)| count)
                .sum()
        };
        let requests = count(100..600);
        Figures {
            requests,
            per_second: requests / duration.as_secs_f64().max(0.001),
            client_errors: count(400..500),
            server_errors: count(500..600),
            p50_ms: quantile(&window.buckets, 0.5).map(|s| s * 1000.0),
            p99_ms: quantile(&window.buckets, 0.99).map(|s| s * 1000.0),
        }
    }

    fn rate(&self, errors: f64) -> f64 {
        if self.requests > 0.0 {
            errors / self.requests
        } else {
            0.0
        }
    }
}

/// The `q` quantile of cumulative histogram counts, interpolated within its bucket, as
/// Prometheus' `histogram_quantile` does; None with no observations.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let fraction = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

/// What a canary must hold to be promoted; each is a flag of `ship --canary`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Thresholds {
    /// Most 5xx answers as a share of requests, above the stable track's.
    pub(crate) max_server_error_rate: f64,
    /// Most 4xx answers as a share of requests, above the stable track's.
    pub(crate) max_client_error_rate: f64,
    /// Most p99 latency as a multiple of the stable track's…
    pub(crate) max_latency_ratio: f64,
    /// …once it is also this many milliseconds above it (below, it is noise).
    pub(crate) latency_slack_ms: f64,
    /// Fewest requests the canary must answer for its figures to mean anything.
    pub(crate) min_requests: f64,
}

/// The analysis's decision, with every figure that went into it.
#[derive(Clone, Debug)]
pub(crate) struct Verdict {
    pub(crate) stable: Figures,
    pub(crate) canary: Figures,
    /// What the check rows found: each line a row's answers from both tracks.
    pub(crate) checks: Vec<String>,
    /// Why the canary fails, if it does.
    pub(crate) failures: Vec<String>,
}

impl Verdict {
    /// Compares the tracks' figures against `thresholds`; `disagreements` are the check
    /// rows the tracks answered differently.
    pub(crate) fn decide(
        stable: Figures,
        canary: Figures,
        thresholds: &Thresholds,
        checks: Vec<String>,
        disagreements: Vec<String>,
    ) -> Verdict {
        let mut failures = disagreements;
        if canary.requests < thresholds.min_requests {
            failures.push(format!(
                "the canary answered {} requests, fewer than the {} its figures need: lengthen --canary-duration, or send traffic",
                canary.requests, thresholds.min_requests
            ));
        }
        let (stable_5xx, canary_5xx) = (
            stable.rate(stable.server_errors),
            canary.rate(canary.server_errors),
        );
        if canary_5xx > stable_5xx + thresholds.max_server_error_rate {
            failures.push(format!(
                "5xx rate {:.2}% against stable's {:.2}% (at most {:.2} points more: --max-server-error-rate)",
                canary_5xx * 100.0,
                stable_5xx * 100.0,
                thresholds.max_server_error_rate * 100.0
            ));
        }
        let (stable_4xx, canary_4xx) = (
            stable.rate(stable.client_errors),
            canary.rate(canary.client_errors),
        );
        if canary_4xx > stable_4xx + thresholds.max_client_error_rate {
            failures.push(format!(
                "4xx rate {:.2}% against stable's {:.2}% (at most {:.2} points more: --max-client-error-rate)",
                canary_4xx * 100.0,
                stable_4xx * 100.0,
                thresholds.max_client_error_rate * 100.0
            ));
        }
        if let (Some(ours), Some(theirs)) = (canary.p99_ms, stable.p99_ms)
            && ours > theirs * thresholds.max_latency_ratio
            && ours > theirs + thresholds.latency_slack_ms
        {
            failures.push(format!(
                "p99 latency {ours:.2} ms against stable's {theirs:.2} ms (at most {}x, or {} ms more: --max-latency-ratio, --latency-slack-ms)",
                thresholds.max_latency_ratio, thresholds.latency_slack_ms
            ));
        }
        Verdict {
            stable,
            canary,
            checks,
            failures,
        }
    }

    /// The verdict of an analysis that could not run: a failure, with no figures.
    pub(crate) fn unable(reason: String) -> Verdict {
        let none = Figures {
            requests: 0.0,
            per_second: 0.0,
            client_errors: 0.0,
            server_errors: 0.0,
            p50_ms: None,
            p99_ms: None,
        };
        Verdict {
            stable: none.clone(),
            canary: none,
            checks: Vec::new(),
            failures: vec![reason],
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
        // Counts are whole numbers (differences of counters): no "-0".
        let count = |value: f64| value.max(0.0).round() as u64;
        writeln!(
            f,
            "| track | requests | per second | 4xx | 5xx | p50 ms | p99 ms |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for (name, figures) in [("stable", &self.stable), ("canary", &self.canary)] {
            writeln!(
                f,
                "| {name} | {} | {:.1} | {} | {} | {} | {} |",
                count(figures.requests),
                figures.per_second,
                count(figures.client_errors),
                count(figures.server_errors),
                ms(figures.p50_ms),
                ms(figures.p99_ms)
            )?;
        }
        for check in &self.checks {
            writeln!(f, "check: {check}")?;
        }
        if self.failures.is_empty() {
            write!(f, "verdict: PASS (every threshold held, every check row agreed)")
        } else {
            write!(f, "verdict: FAIL")?;
            for failure in &self.failures {
                write!(f, "\n  - {failure}")?;
            }
            Ok(())
        }
    }
}

/// Whether two JSON answers agree: the same shape, strings equal, two integers (class
/// labels, counts) equal, other numbers within `tolerance` of the larger magnitude (at
/// least 1).
pub(crate) fn agree(a: &serde_json::Value, b: &serde_json::Value, tolerance: f64) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if !x.is_f64() && !y.is_f64() => x == y,
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= tolerance * x.abs().max(y.abs()).max(1.0),
            _ => false,
        },
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| agree(x, y, tolerance))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(key, x)| ys.get(key).is_some_and(|y| agree(x, y, tolerance)))
        }
        (x, y) => x == y,
    }
}

/// How many canary pods give `percent` of the traffic beside `stable` pods, when traffic
/// follows ready pods (each pod its share of connections): at least one, and the share
/// that count really gives.
pub(crate) fn canary_replicas(stable: u64, percent: u8) -> (u64, f64) {
    let wanted = f64::from(percent) / 100.0;
    let exact = stable as f64 * wanted / (1.0 - wanted).max(0.01);
    let replicas = (exact.round() as u64).max(1);
    let share = replicas as f64 / (stable + replicas) as f64;
    (replicas, share)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP http_requests HTTP requests answered, by route and status.
# TYPE http_requests counter
http_requests_total{route="/score",status="200"} 90
http_requests_total{route="/score",status="400"} 5
http_requests_total{route="/v2/models/{name}/infer",status="500"} 5
http_requests_total{route="/healthz",status="200"} 1000
http_request_duration_seconds_bucket{le="0.001",route="/score"} 50
http_request_duration_seconds_bucket{le="0.002",route="/score"} 95
http_request_duration_seconds_bucket{le="+Inf",route="/score"} 95
http_request_duration_seconds_bucket{le="0.001",route="/v2/models/{name}/infer"} 5
http_request_duration_seconds_bucket{le="0.002",route="/v2/models/{name}/infer"} 5
http_request_duration_seconds_bucket{le="+Inf",route="/v2/models/{name}/infer"} 5
http_request_duration_seconds_bucket{le="0.001",route="/healthz"} 1000
"#;

    #[test]
    fn a_pods_metrics_are_read_for_the_model_routes_only() {
        let snapshot = Snapshot::parse(METRICS);
        assert_eq!(
            snapshot.by_status.get(&200),
            Some(&90.0),
            "health checks do not count"
        );
        assert_eq!(
            snapshot.buckets,
            vec![(0.001, 55.0), (0.002, 100.0), (f64::INFINITY, 100.0)]
        );
        let figures = Figures::of(&snapshot.since(&Snapshot::default()), Duration::from_secs(10));
        assert_eq!(
            (figures.requests, figures.client_errors, figures.server_errors),
            (100.0, 5.0, 5.0)
        );
        assert_eq!(figures.per_second, 10.0);
        // The 50th request is in the first bucket; the 99th near the top of the second.
        let p50 = figures.p50_ms.unwrap();
        assert!((p50 - 50.0 / 55.0).abs() < 1e-9, "{p50}");
        let p99 = figures.p99_ms.unwrap();
        assert!((p99 - (1.0 + 44.0 / 45.0)).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn the_verdict_names_each_threshold_broken_with_its_figures() {
        let track = |requests: f64, server: f64, client: f64, p99: f64| Figures {
            requests,
            per_second: requests / 10.0,
            client_errors: client,
            server_errors: server,
            p50_ms: Some(p99 / 2.0),
            p99_ms: Some(p99),
        };
        let thresholds = Thresholds {
            max_server_error_rate: 0.01,
            max_client_error_rate: 0.05,
            max_latency_ratio: 1.5,
            latency_slack_ms: 5.0,
            min_requests: 20.0,
        };
        let good = Verdict::decide(
            track(300.0, 0.0, 1.0, 2.0),
            track(300.0, 0.0, 2.0, 2.5),
            &thresholds,
            vec![],
            vec![],
        );
        assert!(good.passed(), "{good}");
        let slow = Verdict::decide(
            track(300.0, 0.0, 0.0, 2.0),
            track(300.0, 0.0, 0.0, 40.0),
            &thresholds,
            vec![],
            vec![],
        );
        assert!(!slow.passed());
        assert!(
            slow.to_string()
                .contains("p99 latency 40.00 ms against stable's 2.00 ms"),
            "{slow}"
        );
        // Slower by a ratio, but within the slack: noise at sub-millisecond latencies.
        let noise = Verdict::decide(
            track(300.0, 0.0, 0.0, 0.2),
            track(300.0, 0.0, 0.0, 0.9),
            &thresholds,
            vec![],
            vec![],
        );
        assert!(noise.passed(), "{noise}");
        let failing = Verdict::decide(
            track(300.0, 0.0, 0.0, 2.0),
            track(100.0, 5.0, 30.0, 2.0),
            &thresholds,
            vec![],
            vec!["row 0 differs".into()],
        );
        let text = failing.to_string();
        for expected in [
            "row 0 differs",
            "5xx rate 5.00%",
            "4xx rate 30.00%",
            "verdict: FAIL",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        let idle = Verdict::decide(
            track(300.0, 0.0, 0.0, 2.0),
            track(3.0, 0.0, 0.0, 2.0),
            &thresholds,
            vec![],
            vec![],
        );
        assert!(
            idle.to_string()
                .contains("answered 3 requests, fewer than the 20"),
            "{idle}"
        );
    }

    #[test]
    fn answers_agree_within_the_tolerance_and_labels_exactly() {
        let (a, b) = (
            serde_json::json!({"score": [1.0, "cat"]}),
            serde_json::json!({"score": [1.0000001, "cat"]}),
        );
        assert!(agree(&a, &b, 1e-6));
        assert!(!agree(&a, &serde_json::json!({"score": [1.1, "cat"]}), 1e-6));
        assert!(!agree(&a, &serde_json::json!({"score": [1.0, "dog"]}), 1e-6));
        assert!(!agree(&a, &serde_json::json!({"score": [1.0]}), 1e-6));
        // Two integers are labels or counts: equal, or not, whatever the tolerance.
        let (id, next) = (serde_json::json!(1_000_000_000), serde_json::json!(1_000_000_001));
        assert!(!agree(&id, &next, 1e-6));
        assert!(
            agree(&id, &serde_json::json!(1_000_000_000.0), 1e-6),
            "1e9 as a float"
        );
    }

    #[test]
    fn a_pod_that_restarted_in_the_window_counts_from_zero() {
        let counted = |ok: f64, slow: f64| Snapshot {
            by_status: BTreeMap::from([(200, ok)]),
            buckets: vec![(0.001, ok - slow), (f64::INFINITY, ok)],
        };
        // Pod a answered 100 more; pod b restarted and has answered 7 since.
        let before = [counted(500.0, 0.0), counted(900.0, 10.0)];
        let after = [counted(600.0, 0.0), counted(7.0, 1.0)];
        let window = Snapshot::window(&before, &after);
        assert_eq!(window.by_status[&200], 107.0);
        assert_eq!(window.buckets, vec![(0.001, 106.0), (f64::INFINITY, 107.0)]);
    }

    #[test]
    fn the_canary_share_follows_its_pods_among_all() {
        assert_eq!(canary_replicas(9, 10), (1, 0.1));
        let (replicas, share) = canary_replicas(2, 10);
        assert_eq!(replicas, 1, "at least one pod");
        assert!(
            (share - 1.0 / 3.0).abs() < 1e-9,
            "one of three pods: a third, not a tenth"
        );
        assert_eq!(canary_replicas(2, 50), (2, 0.5));
        assert_eq!(canary_replicas(3, 25).0, 1);
    }
}
