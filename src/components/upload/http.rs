//! The HTTPS service of HTTP File Upload (XEP-0363): HTTP/1.1 (hyper) on rustls with the
//! server's certificates.
//!
//! - `PUT /upload/<id>/<name>?e=..&t=..`: the body is streamed to disk as it arrives; its
//!   Content-Length must equal the slot's size and its Content-Type the slot's type; one
//!   upload per slot. 201 on success.
//! - `GET`/`HEAD /upload/<id>/<name>`: the file, streamed, with its Content-Type and a
//!   Content-Disposition (inline only for images, audio and video; everything else is an
//!   attachment, and `nosniff` plus a sandboxing CSP keep uploaded HTML from running).
//! - `OPTIONS`: the CORS preflight; every answer carries `Access-Control-Allow-Origin: *` so
//!   web clients can upload and download.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::http_upload::{essence, pct_decode, valid_content_type, valid_id, UploadStore};

type Body = BoxBody<Bytes, std::io::Error>;

const MAX_CONNECTIONS: usize = 1024;
const TLS_HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);
/// A PUT that delivers nothing for this long is abandoned.
const BODY_IDLE_LIMIT: Duration = Duration::from_secs(60);

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn cors(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
}

/// Accept HTTPS connections until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    store: Arc<UploadStore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "upload HTTPS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let store = store.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_LIMIT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                _ => {
                    tracing::debug!(%peer, "upload TLS handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(handle(&store, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "upload HTTP connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// One request.
pub async fn handle(store: &UploadStore, req: Request<Incoming>) -> Response<Body> {
    let mut resp = route(store, req).await;
    cors(&mut resp);
    resp
}

async fn route(store: &UploadStore, req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    let path = req.uri().path().to_string();
    let Some((id, name)) = path
        .strip_prefix("/upload/")
        .and_then(|rest| rest.split_once('/'))
    else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let (Some(name), true) = (pct_decode(name), valid_id(id)) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let id = id.to_string();
    match *req.method() {
        Method::PUT => put(store, &id, &name, req).await,
        Method::GET | Method::HEAD => get(store, &id, &name, req.method() == Method::HEAD).await,
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
            );
            r
        }
    }
}

async fn put(store: &UploadStore, id: &str, name: &str, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let slot = match store.claim(id, name, &query) {
        Ok(s) => s,
        Err(409) => return text(StatusCode::CONFLICT, "this slot was used already"),
        Err(_) => return text(StatusCode::FORBIDDEN, "no such slot, or it expired"),
    };
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let refuse = |status, msg: &str| {
        store.fail_upload(&slot);
        text(status, msg)
    };
    match length {
        None => return refuse(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
        Some(n) if n > slot.size => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot")
        }
        Some(n) if n != slot.size => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Content-Length differs from the slot's size",
            )
        }
        Some(_) => {}
    }
    let given_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = match (&slot.content_type, given_type) {
        (Some(want), Some(got)) if essence(want) == essence(&got) => want.clone(),
        (Some(_), _) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type differs from the slot's",
            )
        }
        (None, Some(got)) if valid_content_type(&got) => got,
        (None, _) => "application/octet-stream".to_string(),
    };
    let dir = store.dir().join(id);
    let part = dir.join("data.part");
    let written = async {
        tokio::fs::create_dir(&dir).await?;
        let mut file = tokio::fs::File::create(&part).await?;
        let mut body = req.into_body();
        let mut total: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(BODY_IDLE_LIMIT, body.frame()).await {
                Ok(Some(Ok(f))) => f,
                Ok(Some(Err(e))) => return Err(std::io::Error::other(e)),
                Ok(None) => break,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upload stalled",
                    ))
                }
            };
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > slot.size {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "more data than announced",
                    ));
                }
                file.write_all(&data).await?;
            }
        }
        if total != slot.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "less data than announced",
            ));
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    match written {
        Ok(()) => match store.finish_upload(&slot, &content_type) {
            Ok(()) => {
                tracing::info!(owner = %slot.owner, size = slot.size, "file uploaded");
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::CREATED;
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an upload failed");
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not store the file",
                )
            }
        },
        Err(e) => {
            tracing::debug!(error = %e, "upload failed");
            let status = match e.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                    StatusCode::BAD_REQUEST
                }
                std::io::ErrorKind::TimedOut => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            refuse(status, "upload failed")
        }
    }
}

/// Shown inline: images (not SVG, which can carry script), audio and video.
fn inline_type(ct: &str) -> bool {
    let e = essence(ct);
    (e.starts_with("image/") && e != "image/svg+xml")
        || e.starts_with("audio/")
        || e.starts_with("video/")
}

async fn get(store: &UploadStore, id: &str, name: &str, head: bool) -> Response<Body> {
    let Some(meta) = store.read_meta(id).filter(|m| m.filename == name) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let file = match tokio::fs::File::open(store.data_path(id)).await {
        Ok(f) => f,
        Err(_) => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let body = if head {
        empty()
    } else {
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
        StreamBody::new(stream.map_ok(Frame::data)).boxed()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    let ct = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    let disposition = format!(
        "{}; filename*=UTF-8''{}",
        if inline_type(&meta.content_type) {
            "inline"
        } else {
            "attachment"
        },
        super::http_upload::pct_encode(&meta.filename)
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=604800, immutable"),
    );
    r
}
