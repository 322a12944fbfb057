//! The floor for `POST /score` with the tutorial's request: a bare hyper server on the
//! same runtime and HTTP settings as the service, doing the least the contract allows —
//! read the body, answer `{"score": …}` with the bytes between the first `[` and the last
//! `]` copied, no JSON parsed, no routing, no limits, no metrics. `cargo xtask bench`
//! runs it beside the service; the service's requests per second over this server's is
//! what generality costs on the hot path.
//!
//! Usage: `hyper_floor PORT`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

async fn score(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"))),
    };
    let rows = body
        .iter()
        .position(|b| *b == b'[')
        .zip(body.iter().rposition(|b| *b == b']'))
        .filter(|(open, close)| open < close);
    let Some((open, close)) = rows else {
        return Ok(answer(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}")));
    };
    let mut out = Vec::with_capacity(close - open + 11);
    out.extend_from_slice(b"{\"score\":");
    out.extend_from_slice(&body[open..=close]);
    out.push(b'}');
    Ok(answer(StatusCode::OK, Bytes::from(out)))
}

fn answer(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().expect("a valid header"),
    );
    response
}

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: hyper_floor PORT"))?
        .parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(("127.0.0.1", port)).await?;
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).writev(false);
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service_fn(score))
                        .await;
                });
            }
        })
}
