//! Middleware that keeps hostile or careless clients from wedging the service or
//! using it from a web page:
//! - `read_body`: the whole body is read (within `--body-timeout` and `--max-body`)
//!   before the request takes an in-flight slot, so a stalled upload holds nothing
//!   but its own connection;
//! - `same_origin`: without `TRIAGE_API_KEY`, requests that change something must be
//!   `application/json` and come from no web page but our own (no foreign `Origin`,
//!   no cross-site `Sec-Fetch-Site`); on a loopback address the `Host` must be a
//!   loopback name too (DNS rebinding);
//! - `json_errors`: every 4xx, whoever produced it (axum's path and query
//!   extractors answer `text/plain`), leaves as `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::error::ApiError;
use super::AppState;

/// Read the body completely, then hand the request on with the bytes in memory.
pub async fn read_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = state.cfg.max_body;
    let timeout = state.cfg.limits.body_timeout;
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return closing(too_large(limit));
    }
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", e.to_string()))?;
            if buf.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e)) => closing(e),
        Err(_) => closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {} s (--body-timeout)", timeout.as_secs_f64()),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than the limit of {limit} bytes (--max-body)"),
    )
}

/// The body was not read to its end: the connection cannot carry another request.
fn closing(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Without an API key: refuse what a web page could send on a visitor's behalf.
pub async fn same_origin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.cfg.api_key.is_some() {
        return next.run(req).await;
    }
    let headers = req.headers();
    if state.cfg.loopback_only && !host_is_loopback(headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "foreign_host",
            "without TRIAGE_API_KEY a loopback server answers only requests addressed to a loopback name \
             (localhost, 127.0.0.1, [::1])",
        )
        .into_response();
    }
    if let Some(refusal) = refuse_cross_site(req.method(), headers, false, "without TRIAGE_API_KEY requests that change something are accepted only from non-browser clients or this server's own origin") {
        return refusal.into_response();
    }
    next.run(req).await
}

/// Why a request that changes something must be refused as possibly sent by a page of
/// another site on a visitor's behalf, if it must: a foreign `Origin` or
/// `Sec-Fetch-Site`, or a body that is not JSON (HTML forms cannot send JSON). With
/// `origin_required` (requests signed in by the page's cookie, which a browser attaches
/// by itself) an `Origin` must be present and be this server's.
pub(super) fn refuse_cross_site(method: &Method, headers: &HeaderMap, origin_required: bool, why: &str) -> Option<ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let foreign = foreign_origin(headers)
        .or_else(|| (origin_required && !headers.contains_key(header::ORIGIN)).then(|| "no Origin header".to_string()));
    if let Some(what) = foreign {
        return Some(ApiError::new(StatusCode::FORBIDDEN, "foreign_origin", format!("{what}; {why}")));
    }
    let has_body = *method != Method::DELETE;
    if has_body && !is_json(headers) {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ));
    }
    None
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The host part of the `Host` header, without the port or IPv6 brackets.
fn host_name(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return Some(rest.split(']').next().unwrap_or_default().to_string());
    }
    Some(host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h).to_string())
}

fn host_is_loopback(headers: &HeaderMap) -> bool {
    let Some(host) = host_name(headers) else {
        // HTTP/1.0 without Host: no browser sends that.
        return !headers.contains_key(header::HOST);
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why the request looks like it comes from a page of another origin, if it does.
fn foreign_origin(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site.trim(), "same-origin" | "none") {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("?").trim().to_ascii_lowercase();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| h.trim().to_ascii_lowercase());
    let own = host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
    (!own).then(|| format!("Origin {origin} is not this server's"))
}

/// Give every 4xx the JSON error shape; ours already have it and pass unchanged.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("client error").to_string() } else { message };
    let (_, json) = ApiError::new(status, code_for(status), message).into_response().into_parts();
    // Other headers (Allow, Retry-After, ...) stay.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, json)
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "body_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        429 => "busy",
        431 => "headers_too_large",
        _ => "client_error",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts_and_others() {
        for h in ["127.0.0.1:8080", "localhost:1", "LOCALHOST", "[::1]:80", "127.9.9.9", "app.localhost:3"] {
            assert!(host_is_loopback(&headers(&[("host", h)])), "{h}");
        }
        for h in ["evil.example:8080", "10.0.0.1", "[2001:db8::1]:80", "localhost.evil.example"] {
            assert!(!host_is_loopback(&headers(&[("host", h)])), "{h}");
        }
        assert!(host_is_loopback(&HeaderMap::new()));
    }

    #[test]
    fn origins_must_be_our_own() {
        assert!(foreign_origin(&headers(&[("host", "127.0.0.1:8080")])).is_none(), "no Origin: not a browser form");
        assert!(foreign_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])).is_none());
        for o in ["http://evil.example", "null", "http://127.0.0.1:9999", "http://localhost:8080"] {
            assert!(foreign_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", o)])).is_some(), "{o}");
        }
        assert!(foreign_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(foreign_origin(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(foreign_origin(&headers(&[("sec-fetch-site", "none")])).is_none());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[("content-type", "Application/JSON; charset=utf-8")])));
        for t in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"] {
            assert!(!is_json(&headers(&[("content-type", t)])), "{t}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
