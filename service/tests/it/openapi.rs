//! The published contract, `service/openapi.json`, served at `GET /openapi.json`, kept in
//! step with the router: every route is documented with the methods it answers, and
//! every documented operation reaches a route.

use serde_json::Value;

use crate::support::{TestServer, post};

fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("the document is JSON")
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{model_name}", "echo")
        .replace("{model_version}", "1")
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_served() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "{} paths", paths.len());
    let server = TestServer::start().await;
    for (path, operations) in paths {
        let concrete = concrete(path);
        let route = score_service::http::Route::of(&concrete);
        assert_ne!(
            route,
            score_service::http::Route::Unmatched,
            "{path} reaches no route"
        );
        let methods: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        assert_eq!(
            methods,
            [route.allow().split(", ").next().unwrap()],
            "{path}: the documented method is the one the route answers"
        );
        let response = if methods[0] == "GET" {
            server.get(&concrete).await
        } else {
            server.send(post(&concrete, "application/json", "{}")).await
        };
        assert!(
            ![404, 405].contains(&response.status)
                || concrete.contains("/v2/models/") && response.status == 404,
            "{path}: {response:?}"
        );
        for (status, answer) in operations.as_object().unwrap().values().next().unwrap()["responses"]
            .as_object()
            .unwrap()
        {
            assert!(status.parse::<u16>().is_ok(), "{path}: response {status}");
            assert!(answer.is_object());
        }
    }
    for route in score_service::http::Route::ALL {
        if route == score_service::http::Route::Unmatched {
            continue;
        }
        let documented = paths
            .keys()
            .any(|path| score_service::http::Route::of(&concrete(path)) == route);
        assert!(documented, "{route:?} ({}) is not documented", route.label());
    }
}

#[tokio::test]
async fn the_server_serves_the_committed_document() {
    let server = TestServer::start().await;
    let response = server.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), document());
}
