//! The review workbench page at `/ui`: plain HTML, CSS and JavaScript compiled into
//! the binary (no CDN, no build step), talking to the `/v1/review` routes.
//!
//! Sign-in: the page posts the API key once (`POST /ui/login`, JSON); the answer sets an
//! `HttpOnly; SameSite=Strict` cookie holding a token derived from the key (never the
//! key itself). `/v1` routes take that cookie in place of `Authorization: Bearer`, and
//! then refuse any write that is not same-origin JSON carrying our own `Origin`
//! ([`super::protect::refuse_cross_site`]): a page of another site can neither read the
//! queue nor act on it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ApiError, JsonBody};
use super::protect::refuse_cross_site;
use super::AppState;
use crate::example::hex;

const COOKIE: &str = "triage_session";
const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// The cookie value that stands for `key`: a hash of it under a fixed context, so
/// every replica with the same keys accepts it and the cookie never holds the key.
pub(super) fn session_token(key: &str) -> String {
    hex(&Sha256::digest(format!("triage-ui-session\0{}", key.trim()).as_bytes()))
}

/// The session cookie's value, if the request carries one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // No inline script, no other origin, no framing (keys act on what is shown).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

pub async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    key: String,
}

fn cookie(value: &str, max_age: u64) -> HeaderValue {
    let v = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("triage_session=; Max-Age=0"))
}

/// Sign the page in: check the API key, set the session cookie.
pub async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, JsonBody(body): JsonBody<Login>) -> Response {
    if let Some(refusal) = refuse_cross_site(&Method::POST, &headers, false, "sign in from this server's own page") {
        return refusal.into_response();
    }
    let Some(expected) = &state.cfg.api_key else {
        return Json(serde_json::json!({"signed_in": true, "key_required": false})).into_response();
    };
    let matched = expected
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .fold(None, |found, k| if super::same_secret(body.key.trim(), k) { Some(k) } else { found });
    let Some(key) = matched else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong API key").into_response();
    };
    let mut resp = Json(serde_json::json!({"signed_in": true, "key_required": true, "reviewer": crate::provenance::key_id(key)}))
        .into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie(&session_token(key), 12 * 3600));
    resp
}

/// Whether the page needs signing in (the server has API keys).
pub async fn session(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"key_required": state.cfg.api_key.is_some()}))
}

/// Sign the page out: clear the cookie.
pub async fn logout(headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_cross_site(&Method::POST, &headers, false, "sign out from this server's own page") {
        return refusal.into_response();
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie("", 0));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_holds_a_token_not_the_key() {
        let t = session_token("k-123");
        assert_eq!(t.len(), 64);
        assert!(!t.contains("k-123"));
        assert_ne!(t, session_token("k-124"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(&format!("a=1; {COOKIE}={t}; b=2")).unwrap());
        assert_eq!(session_cookie(&h), Some(t.as_str()));
        h.insert(header::COOKIE, HeaderValue::from_static("triage_sessionx=1"));
        assert_eq!(session_cookie(&h), None);
        let c = cookie(&t, 10);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    }
}
