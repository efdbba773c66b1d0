//! The simulator's HTTP side, on hyper's HTTP/1.1 server: a request becomes a [`Request`]
//! (body read whole, at most [`BODY_LIMIT`] bytes: a larger one is answered 413 and the
//! connection closed, so its unread bytes never reach the next request), a [`Reply`] becomes
//! a response with the simulator's (skewed) `Date`, and a truncated reply sends half its
//! body under the full `Content-Length` and aborts the connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::Simulator;
use crate::store::parse_query;

/// The largest request body the simulator reads (token forms and Log Analytics queries are
/// a few hundred bytes).
pub const BODY_LIMIT: usize = 1 << 20;

type Body = BoxBody<Bytes, std::io::Error>;

/// A request as the simulator's handlers see it.
pub(crate) struct Request {
    pub(crate) method: hyper::Method,
    /// Path and query as sent (what the request log shows).
    pub(crate) target: String,
    /// The path, still percent-encoded.
    pub(crate) path: String,
    pub(crate) query: HashMap<String, String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Request {
    /// A header's value, when it is text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An answer: status, JSON body, extra headers, and whether to cut the body short.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    pub(crate) truncate: bool,
}

impl Reply {
    pub(crate) fn json(status: u16, body: String) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
            truncate: false,
        }
    }

    /// A Graph error body: `{"error": {"code", "message"}}`.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        )
    }

    /// The response: `Date` on the simulator's clock (`skew_secs` off), and a truncated body
    /// as half the bytes then an error, which makes hyper abort the connection.
    fn into_response(self, skew_secs: i64) -> Response<Body> {
        let date = chrono::Utc::now() + chrono::Duration::seconds(skew_secs);
        let full_length = self.body.len();
        let body: Body = if self.truncate {
            let half = self.body.slice(..full_length / 2);
            let frames: [Result<Frame<Bytes>, std::io::Error>; 2] = [
                Ok(Frame::data(half)),
                Err(std::io::Error::other("truncated by the simulator")),
            ];
            BoxBody::new(StreamBody::new(futures::stream::iter(frames)))
        } else {
            Full::new(self.body).map_err(|never| match never {}).boxed()
        };
        let mut response = Response::new(body);
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        let mut set = |name: &str, value: &str| {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        };
        set("content-type", "application/json");
        set(
            "date",
            &date.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
        if self.truncate {
            set("content-length", &full_length.to_string());
            set("connection", "close");
        }
        for (name, value) in &self.headers {
            set(name, value);
        }
        response
    }
}

/// Accepts connections until the listener fails, each served on its own task.
pub(crate) async fn serve(sim: Arc<Simulator>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let sim = sim.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let sim = sim.clone();
                async move { Ok::<_, Infallible>(respond(&sim, request).await) }
            });
            // A connection's end (or a client that goes away) is not the simulator's error.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads one request's body (within the limit) and answers it.
async fn respond(sim: &Simulator, request: hyper::Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let skew = sim.faults.clock_skew_secs;
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let (status, code, message) = if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    413,
                    "RequestEntityTooLarge",
                    format!("the request body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                (
                    400,
                    "BadRequest",
                    format!("the request body could not be read: {e}"),
                )
            };
            sim.log_refused(parts.method.as_str(), &target, status);
            let mut reply = Reply::error(status, code, &message);
            // The rest of the body is never read: the connection cannot carry another request.
            reply.headers.push(("connection", "close".into()));
            return reply.into_response(skew);
        }
    };
    let request = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parse_query(parts.uri.query().unwrap_or_default()),
        target,
        headers: parts.headers,
        body,
    };
    sim.answer(&request).await.into_response(skew)
}
