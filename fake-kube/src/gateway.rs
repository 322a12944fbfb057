//! Gateways (`gateway.networking.k8s.io/v1`), as a cloud's gateway controller runs them:
//! each Gateway gets a loopback address of its own with an HTTP server per listener, and
//! routes every request — not every connection, as a Service's TCP load balancer does —
//! by the HTTPRoutes attached to it: the rule with the most specific path match, then
//! one of its backends at random in proportion to its weight, then a ready endpoint of
//! that Service. That is how Envoy splits a canary's share. Answers where no backend can
//! take a request are Envoy's: 404 without a matching route, 500 when every weight is
//! zero, 503 `no healthy upstream` when the chosen Service has no ready endpoint.
//!
//! The Gateway's status names its address (`Accepted`, `Programmed`); each attached
//! route's says whether the Gateway accepted it and whether its backends resolve.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cluster::Shared;
use crate::loadbalancer::{Serving, endpoints, next_loopback};
use crate::resources::IDS;
use crate::store::{Part, Writer};
use crate::util::{self, is_deleting, name_of, namespace_of, uid_of};

const MANAGER: &str = "gateway-controller";
const CONTROLLER_NAME: &str = "fake-kube.io/gateway-controller";
const TICK: Duration = Duration::from_millis(250);

/// One listener of a Gateway, as routes attach to it.
#[derive(Clone, Debug, PartialEq)]
struct Listener {
    name: String,
    port: u16,
}

fn listeners(gateway: &Value) -> Vec<Listener> {
    gateway
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| {
            Some(Listener {
                name: l.get("name")?.as_str()?.to_owned(),
                port: u16::try_from(l.get("port")?.as_u64()?).ok()?,
            })
        })
        .collect()
}

struct Gateway {
    /// The Gateway's listeners when they were opened; a change reopens them.
    listeners: Vec<Listener>,
    _serving: Serving,
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut serving: HashMap<String, Gateway> = HashMap::new();
    let mut revision = shared.store().watch_revision();
    let mut shutdown = shared.shutdown_signal();
    loop {
        let gateways: Vec<Arc<Value>> = {
            let store = shared.store();
            store
                .list(IDS.gateways, None)
                .into_iter()
                .filter(|g| !is_deleting(g) && class_exists(&store, g))
                .collect()
        };
        serving.retain(|uid, s| {
            gateways
                .iter()
                .any(|g| uid_of(g) == uid && listeners(g) == s.listeners)
        });
        for gateway in &gateways {
            if !serving.contains_key(uid_of(gateway))
                && let Some(opened) = open(&shared, gateway).await
            {
                serving.insert(uid_of(gateway).to_owned(), opened);
            }
        }
        report_routes(&shared);
        revision.mark_unchanged();
        tokio::select! {
            _ = revision.changed() => {}
            () = tokio::time::sleep(TICK) => {}
            () = shutdown.wait() => return,
        }
    }
}

/// Whether the Gateway's class is one the cluster has: no controller takes another's.
fn class_exists(store: &crate::store::Store, gateway: &Value) -> bool {
    gateway
        .pointer("/spec/gatewayClassName")
        .and_then(Value::as_str)
        .is_some_and(|class| store.get_by(IDS.gatewayclasses, "", class).is_some())
}

/// Binds every listener of a Gateway on one fresh address and publishes the address.
async fn open(shared: &Arc<Shared>, gateway: &Arc<Value>) -> Option<Gateway> {
    let wanted = listeners(gateway);
    if wanted.is_empty() {
        return None;
    }
    let mut chosen = None;
    for _ in 0..300 {
        let ip: IpAddr = next_loopback().into();
        let mut bound = Vec::new();
        for listener in &wanted {
            match TcpListener::bind(SocketAddr::new(ip, listener.port)).await {
                Ok(socket) => bound.push((listener.clone(), socket)),
                Err(_) => break,
            }
        }
        if bound.len() == wanted.len() {
            chosen = Some((ip, bound));
            break;
        }
    }
    let (namespace, name) = (namespace_of(gateway).to_owned(), name_of(gateway).to_owned());
    let Some((ip, bound)) = chosen else {
        shared.store().record_event(
            gateway,
            true,
            "SYNC",
            "no loopback address has the listeners' ports free",
            MANAGER,
        );
        return None;
    };
    let tasks = bound
        .into_iter()
        .map(|(listener, socket)| {
            tokio::spawn(serve(
                shared.clone(),
                namespace.clone(),
                name.clone(),
                listener,
                socket,
            ))
        })
        .collect();
    let now = util::now();
    let generation = gateway
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let condition = |kind: &str| {
        json!({"type": kind, "status": "True", "reason": kind, "message": "",
               "observedGeneration": generation, "lastTransitionTime": now})
    };
    let mut store = shared.store();
    if let Some(live) = store.get_by(IDS.gateways, &namespace, &name).cloned() {
        let mut next = (*live).clone();
        next["status"] = json!({
            "addresses": [{"type": "IPAddress", "value": ip.to_string()}],
            "conditions": [condition("Accepted"), condition("Programmed")],
        });
        let _ = store.update(
            IDS.gateways,
            &namespace,
            &name,
            next,
            Part::Status,
            &Writer::system(MANAGER),
        );
    }
    Some(Gateway {
        listeners: wanted,
        _serving: Serving(tasks),
    })
}

async fn serve(
    shared: Arc<Shared>,
    namespace: String,
    gateway: String,
    listener: Listener,
    socket: TcpListener,
) {
    let at = Arc::new((namespace, gateway, listener));
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (shared, at) = (shared.clone(), at.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let (shared, at) = (shared.clone(), at.clone());
                async move { Ok::<_, Infallible>(route(&shared, &at.0, &at.1, &at.2, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// One request through the Gateway: routed, forwarded, and answered with what the
/// backend answered.
async fn route(
    shared: &Shared,
    namespace: &str,
    gateway: &str,
    listener: &Listener,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let target = match choose(shared, namespace, gateway, listener, request.uri().path()) {
        Ok(target) => target,
        Err((status, body)) => return answer(status, body),
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST, "");
    };
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Ok(upstream) = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(Full::new(body))
    else {
        return answer(StatusCode::BAD_REQUEST, "");
    };
    match crate::proxy::exchange(target, upstream, parts.headers.get(CONTENT_TYPE).cloned()).await {
        Ok((parts, body)) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = parts.status;
            if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
                response.headers_mut().insert(CONTENT_TYPE, content_type.clone());
            }
            response
        }
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream connect error or disconnect/reset before headers",
        ),
    }
}

/// Whether `route` is attached to this Gateway's `listener`.
fn attached(route: &Value, gateway: &str, listener: &Listener) -> bool {
    route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|parent| {
            parent.get("name").and_then(Value::as_str) == Some(gateway)
                && parent.get("kind").and_then(Value::as_str).unwrap_or("Gateway") == "Gateway"
                && parent
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_none_or(|ns| ns == namespace_of(route))
                && parent
                    .get("sectionName")
                    .and_then(Value::as_str)
                    .is_none_or(|section| section == listener.name)
                && parent
                    .get("port")
                    .and_then(Value::as_u64)
                    .is_none_or(|port| port == u64::from(listener.port))
        })
}

/// How specifically a rule matches `path`, if it does: an exact match beats any prefix,
/// a longer prefix a shorter one. A rule without matches matches every path.
fn specificity(rule: &Value, path: &str) -> Option<(u8, usize)> {
    let matches = rule.get("matches").and_then(Value::as_array);
    let Some(matches) = matches.filter(|m| !m.is_empty()) else {
        return Some((1, 1));
    };
    matches
        .iter()
        .filter_map(|m| {
            let kind = m
                .pointer("/path/type")
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix");
            let value = m.pointer("/path/value").and_then(Value::as_str).unwrap_or("/");
            let prefix = value.trim_end_matches('/');
            match kind {
                "Exact" if path == value => Some((2, value.len())),
                "PathPrefix"
                    if prefix.is_empty()
                        || path == prefix
                        || path
                            .strip_prefix(prefix)
                            .is_some_and(|rest| rest.starts_with('/')) =>
                {
                    Some((1, value.len()))
                }
                _ => None,
            }
        })
        .max()
}

/// Where this request goes: the backend is chosen by weight, then a ready endpoint of it.
fn choose(
    shared: &Shared,
    namespace: &str,
    gateway: &str,
    listener: &Listener,
    path: &str,
) -> Result<SocketAddr, (StatusCode, &'static str)> {
    let backend = {
        let store = shared.store();
        let mut routes: Vec<Arc<Value>> = store
            .list(IDS.httproutes, Some(namespace))
            .into_iter()
            .filter(|r| !is_deleting(r) && attached(r, gateway, listener))
            .collect();
        // The oldest route wins a tie, as the Gateway API orders them.
        routes.sort_by_key(|r| {
            (
                r.pointer("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name_of(r).to_owned(),
            )
        });
        let mut best: Option<((u8, usize), Value)> = None;
        for route in &routes {
            for rule in route
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(score) = specificity(rule, path)
                    && best.as_ref().is_none_or(|(top, _)| score > *top)
                {
                    best = Some((score, rule.clone()));
                }
            }
        }
        let (_, rule) = best.ok_or((StatusCode::NOT_FOUND, ""))?;
        let backends: Vec<(String, u16, u64)> = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| {
                Some((
                    b.get("name")?.as_str()?.to_owned(),
                    u16::try_from(b.get("port")?.as_u64()?).ok()?,
                    b.get("weight").and_then(Value::as_u64).unwrap_or(1),
                ))
            })
            .collect();
        let total: u64 = backends.iter().map(|(_, _, weight)| weight).sum();
        if total == 0 {
            return Err((StatusCode::INTERNAL_SERVER_ERROR, ""));
        }
        let mut pick = util::random_u64() % total;
        backends
            .into_iter()
            .find(|(_, _, weight)| {
                let here = pick < *weight;
                pick = pick.saturating_sub(*weight);
                here
            })
            .expect("the pick is below the total weight")
    };
    let (service, port, _) = backend;
    let ready = endpoints(shared, namespace, &service, port);
    if ready.is_empty() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream"));
    }
    Ok(ready[(util::random_u64() % ready.len() as u64) as usize])
}

/// Writes each attached route's status: accepted by its Gateway, and whether every
/// backend it names is a Service that exists.
fn report_routes(shared: &Shared) {
    let mut store = shared.store();
    for route in store.list(IDS.httproutes, None) {
        let namespace = namespace_of(&route);
        let mut parents = Vec::new();
        for parent in route
            .pointer("/spec/parentRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = parent.get("name").and_then(Value::as_str).unwrap_or_default();
            if store.get_by(IDS.gateways, namespace, name).is_none() {
                continue;
            }
            let missing: Vec<&str> = route
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|rule| {
                    rule.get("backendRefs")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .filter_map(|b| b.get("name")?.as_str())
                .filter(|service| store.get_by(IDS.services, namespace, service).is_none())
                .collect();
            let resolved = if missing.is_empty() {
                json!({"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": ""})
            } else {
                json!({"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
                       "message": format!("Services not found: {}", missing.join(", "))})
            };
            parents.push(json!({
                "parentRef": parent,
                "controllerName": CONTROLLER_NAME,
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""},
                    resolved,
                ],
            }));
        }
        let status = json!({"parents": parents});
        if route.get("status") == Some(&status) {
            continue;
        }
        let mut next = (*route).clone();
        next["status"] = status;
        let name = name_of(&route).to_owned();
        let namespace = namespace.to_owned();
        let _ = store.update(
            IDS.httproutes,
            &namespace,
            &name,
            next,
            Part::Status,
            &Writer::system(MANAGER),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_path_match_wins() {
        let rule = |kind: &str, value: &str| json!({"matches": [{"path": {"type": kind, "value": value}}]});
        assert_eq!(specificity(&json!({}), "/score"), Some((1, 1)));
        assert_eq!(
            specificity(&rule("PathPrefix", "/v2"), "/v2/models"),
            Some((1, 3))
        );
        assert_eq!(specificity(&rule("PathPrefix", "/v2"), "/v2x"), None);
        assert_eq!(specificity(&rule("Exact", "/score"), "/score"), Some((2, 6)));
        assert!(
            specificity(&rule("Exact", "/score"), "/score")
                > specificity(&rule("PathPrefix", "/score"), "/score")
        );
    }

    #[test]
    fn routes_attach_by_gateway_section_and_port() {
        let listener = Listener {
            name: "http".into(),
            port: 80,
        };
        let route =
            |parent: Value| json!({"metadata": {"namespace": "mlops"}, "spec": {"parentRefs": [parent]}});
        assert!(attached(&route(json!({"name": "gw"})), "gw", &listener));
        assert!(attached(
            &route(json!({"name": "gw", "sectionName": "http", "port": 80})),
            "gw",
            &listener
        ));
        assert!(!attached(
            &route(json!({"name": "gw", "sectionName": "https"})),
            "gw",
            &listener
        ));
        assert!(!attached(
            &route(json!({"name": "gw", "namespace": "other"})),
            "gw",
            &listener
        ));
        assert!(!attached(&route(json!({"name": "other"})), "gw", &listener));
    }
}
