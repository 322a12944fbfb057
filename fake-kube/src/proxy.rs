//! The pod proxy subresource, `/api/v1/namespaces/NS/pods/NAME[:PORT]/proxy/PATH`: the API
//! server forwards the request to the pod's port and answers with what the pod answered,
//! so a client with only API access (`kubectl get --raw`, `kubectl create --raw`) can
//! read a pod's metrics or ask it a question. PORT is a container port's number or name;
//! without it, the pod's first declared port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::cluster::Shared;
use crate::error::ApiError;
use crate::resources::{IDS, RESOURCES};
use crate::server::Body;
use crate::util::uid_of;

/// How long the pod gets to answer, as the API server bounds a proxied request.
const PROXY_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxy target in `path`, if it is one: namespace, pod, port, the path on the pod.
pub(crate) fn target(path: &str) -> Option<(String, String, Option<String>, String)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once("/pods/")?;
    let (name_port, rest) = match rest.split_once("/proxy/") {
        Some((name_port, rest)) => (name_port, format!("/{rest}")),
        None => (rest.strip_suffix("/proxy")?, String::new()),
    };
    if namespace.contains('/') || name_port.contains('/') {
        return None;
    }
    let (name, port) = match name_port.split_once(':') {
        Some((name, port)) => (name, Some(port.to_owned())),
        None => (name_port, None),
    };
    let path = if rest.is_empty() { "/".to_owned() } else { rest };
    Some((namespace.to_owned(), name.to_owned(), port, path))
}

/// Forwards `method path?query` with `body` to the pod, and answers with its answer.
pub(crate) async fn forward(
    shared: &Arc<Shared>,
    (namespace, name, port, path): (String, String, Option<String>, String),
    method: Method,
    query: Option<&str>,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let pod = shared
        .store()
        .get_by(IDS.pods, &namespace, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&RESOURCES[IDS.pods], &name))?;
    let container_port = container_port(&pod, port.as_deref()).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "pod {name} has no container port {:?}",
            port.as_deref().unwrap_or("(any)")
        ))
    })?;
    let address = shared
        .ports(uid_of(&pod))
        .into_iter()
        .find(|p| p.container_port == container_port)
        .map(|p| p.address)
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!(
                "pod {name} is not running: no address for port {container_port}"
            ))
        })?;
    let uri = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .body(Full::new(body))
        .map_err(|err| ApiError::BadRequest(format!("cannot proxy {uri:?}: {err}")))?;
    let (parts, body) = exchange(address, request, content_type)
        .await
        .map_err(|err| ApiError::ServiceUnavailable(format!("error trying to reach service: {err}")))?;
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = parts.status;
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        response.headers_mut().insert(CONTENT_TYPE, content_type.clone());
    }
    Ok(response)
}

/// Sends one request to `address` on a connection of its own and reads the whole answer,
/// within the proxy's deadline: the pod proxy's and the gateway's way to a pod.
pub(crate) async fn exchange(
    address: SocketAddr,
    mut request: Request<Full<Bytes>>,
    content_type: Option<HeaderValue>,
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    request.headers_mut().insert(
        hyper::header::HOST,
        HeaderValue::from_str(&address.to_string()).map_err(|e| e.to_string())?,
    );
    if let Some(content_type) = content_type {
        request.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    let exchange = async {
        let stream = TcpStream::connect(address).await.map_err(|err| err.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| err.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|err| err.to_string())?.to_bytes();
        Ok::<_, String>((parts, body))
    };
    tokio::time::timeout(PROXY_TIMEOUT, exchange)
        .await
        .map_err(|_| "the pod did not answer in time".to_owned())?
}

/// The container port `port` names (a number or a port's name), or the first declared.
fn container_port(pod: &Value, port: Option<&str>) -> Option<u16> {
    let declared = crate::ports::of_pod(pod);
    match port {
        None => declared.first().map(|first| first.number),
        Some(port) => port
            .parse::<u16>()
            .ok()
            .or_else(|| crate::ports::resolve(&declared, &Value::String(port.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_name_the_pod_its_port_and_the_path_on_it() {
        assert_eq!(
            target("/api/v1/namespaces/mlops/pods/web-1:9090/proxy/metrics"),
            Some((
                "mlops".into(),
                "web-1".into(),
                Some("9090".into()),
                "/metrics".into()
            ))
        );
        assert_eq!(
            target("/api/v1/namespaces/mlops/pods/web-1/proxy"),
            Some(("mlops".into(), "web-1".into(), None, "/".into()))
        );
        assert_eq!(
            target("/api/v1/namespaces/mlops/pods/web-1:http/proxy/v2/models/m"),
            Some((
                "mlops".into(),
                "web-1".into(),
                Some("http".into()),
                "/v2/models/m".into()
            ))
        );
        assert_eq!(target("/api/v1/namespaces/mlops/pods/web-1/log"), None);
    }
}
