use prometheus_parse::{Scrape, Value};

use crate::support::TestServer;

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is not a plain value: {other:?}"),
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[tokio::test]
async fn metrics_parse_and_count_requests() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        assert_eq!(server.score(r#"{"X": [1]}"#).await.status, 200);
    }
    assert_eq!(server.score(r#"{"X": "no"}"#).await.status, 400);
    assert_eq!(server.get("/nowhere").await.status, 404);

    let response = server.get("/metrics").await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let scrape =
        Scrape::parse(response.text().lines().map(|l| Ok(l.to_owned()))).expect("parses as Prometheus text");

    assert_eq!(
        counter(
            &scrape,
            "http_requests_total",
            &[("route", "/score"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        counter(
            &scrape,
            "http_requests_total",
            &[("route", "/score"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        counter(
            &scrape,
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        counter(&scrape, "http_requests_in_flight", &[]),
        1.0,
        "only the scrape itself"
    );
    assert_eq!(counter(&scrape, "build_info", &[("model", "echo")]), 1.0);

    let latency = scrape
        .samples
        .iter()
        .find(|s| s.metric == "http_request_duration_seconds" && s.labels.get("route") == Some("/score"))
        .expect("a latency histogram for /score");
    let Value::Histogram(buckets) = &latency.value else {
        panic!("not a histogram: {:?}", latency.value)
    };
    let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
    assert_eq!(total, 4.0, "four /score requests observed: {buckets:?}");
}

#[tokio::test]
async fn metrics_are_on_the_operator_port_only_and_the_public_port_says_so() {
    let mut server = TestServer::with_operator_port().await;
    assert_eq!(server.score(r#"{"X": [1, 2]}"#).await.status, 200);
    let metrics = server.get_operator("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .text()
            .contains(r#"http_requests_total{route="/score",status="200"} 1"#),
        "{}",
        metrics.text()
    );
    for path in ["/healthz", "/readyz"] {
        assert_eq!(server.get_operator(path).await.status, 200, "{path}");
        assert_eq!(
            server.get(path).await.status,
            200,
            "{path} stays public, for probes"
        );
    }
    let public = server.get("/metrics").await;
    assert_eq!(public.status, 404);
    assert!(
        public.error().contains("/metrics is served on the operator port"),
        "{public:?}"
    );
    let operator = server.get_operator("/v2/models/echo").await;
    assert_eq!(operator.status, 404);
    assert!(
        operator.error().contains("this is the operator port"),
        "{operator:?}"
    );
    let document = server.get("/openapi.json").await.json();
    assert!(
        document["paths"].get("/metrics").is_none(),
        "the public document leaves it out"
    );
    assert!(document["paths"].get("/score").is_some());
    // Both ports drain together.
    server.trigger_shutdown();
    assert!(server.finished().await);
}
