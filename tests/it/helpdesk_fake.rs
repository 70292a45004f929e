//! Fake helpdesks for the pull tests, on 127.0.0.1 port 0: Zendesk-shaped (cursor
//! export, `PUT /api/v2/tickets/{id}.json`, comments) and Freshdesk-shaped (ticket
//! list by update time and page, `PUT /api/v2/tickets/{id}`, notes, conversations).
//! Each write moves the ticket to the end of the export (a new update time), as the
//! real ones do. Faults are scheduled by request kind and number: 429 with
//! Retry-After, 500, slow answers, answers held until the client is killed. Export
//! requests carry rate-limit headers, and a request sent while the limit says wait is
//! answered 429 and counted as a violation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use ticket_triage::helpdesk::{parse_rfc3339, rfc3339};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Kind {
    Export,
    /// Ticket updates (PUT).
    Write,
    /// Freshdesk note creation (POST).
    Note,
    /// Comment or conversation listings.
    Read,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with this Retry-After, not processed.
    TooMany(u64),
    /// 500, not processed.
    ServerError,
    /// Processed, answered this much later.
    Slow(Duration),
    /// Processed, then the answer never comes (until the client is killed).
    HoldAfter,
    /// Not processed, and the answer never comes.
    HoldBefore,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Flavor {
    Zendesk,
    Freshdesk,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Zendesk => "zendesk",
            Flavor::Freshdesk => "freshdesk",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: u64,
    pub subject: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Custom fields: Zendesk field id (as text) or Freshdesk `cf_` name -> value.
    pub fields: BTreeMap<String, Value>,
    /// Bodies of private notes (internal comments).
    pub notes: Vec<String>,
    pub updated: u64,
    seq: u64,
}

pub struct Desk {
    pub tickets: BTreeMap<u64, Ticket>,
    clock: u64,
    seq: u64,
    faults: HashMap<(Kind, usize), Fault>,
    counts: HashMap<Kind, usize>,
    /// Every answer: request kind and status.
    pub log: Vec<(Kind, u16)>,
    /// Set when a held request was processed (or reached, for HoldBefore).
    pub held: bool,
    /// Export requests per rate-limit window, and the window's reset.
    rate: Option<(u32, Duration)>,
    remaining: u32,
    blocked_until: Option<Instant>,
    pub violations: usize,
    auth: String,
}

impl Desk {
    fn bump(&mut self, id: u64) {
        self.clock += 1;
        self.seq += 1;
        let (clock, seq) = (self.clock, self.seq);
        if let Some(t) = self.tickets.get_mut(&id) {
            t.updated = clock;
            t.seq = seq;
        }
    }
}

#[derive(Clone)]
pub struct Fake {
    pub url: String,
    pub flavor: Flavor,
    pub desk: Arc<Mutex<Desk>>,
}

pub const ZENDESK_EMAIL: &str = "agent@example.com";
pub const ZENDESK_TOKEN: &str = "zd-secret-token-123";
pub const FRESHDESK_KEY: &str = "fd-secret-key-456";

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Fake {
    pub async fn start(flavor: Flavor) -> Fake {
        let auth = match flavor {
            Flavor::Zendesk => format!("Basic {}", base64(format!("{ZENDESK_EMAIL}/token:{ZENDESK_TOKEN}").as_bytes())),
            Flavor::Freshdesk => format!("Basic {}", base64(format!("{FRESHDESK_KEY}:X").as_bytes())),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let desk = Arc::new(Mutex::new(Desk {
            tickets: BTreeMap::new(),
            clock: now - 7200,
            seq: 0,
            faults: HashMap::new(),
            counts: HashMap::new(),
            log: Vec::new(),
            held: false,
            rate: None,
            remaining: 0,
            blocked_until: None,
            violations: 0,
            auth,
        }));
        let app = match flavor {
            Flavor::Zendesk => Router::new()
                .route("/api/v2/incremental/tickets/cursor.json", get(zd_export))
                .route("/api/v2/tickets/{file}", put(zd_update))
                .route("/api/v2/tickets/{id}/comments.json", get(zd_comments)),
            Flavor::Freshdesk => Router::new()
                .route("/api/v2/tickets", get(fd_list))
                .route("/api/v2/tickets/{id}", put(fd_update))
                .route("/api/v2/tickets/{id}/notes", post(fd_note))
                .route("/api/v2/tickets/{id}/conversations", get(fd_conversations)),
        }
        .with_state((desk.clone(), flavor));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { url, flavor, desk }
    }

    pub fn lock(&self) -> MutexGuard<'_, Desk> {
        self.desk.lock().unwrap()
    }

    /// Add tickets (subject, description); `same_second`: all get one update time.
    pub fn add(&self, tickets: &[(String, String)], same_second: bool) -> Vec<u64> {
        let mut d = self.lock();
        let mut ids = Vec::new();
        if same_second {
            d.clock += 1;
        }
        for (subject, description) in tickets {
            let id = d.tickets.keys().next_back().copied().unwrap_or(0) + 1;
            if !same_second {
                d.clock += 1;
            }
            d.seq += 1;
            let t = Ticket {
                id,
                subject: subject.clone(),
                description: description.clone(),
                tags: vec!["web".into()],
                fields: BTreeMap::new(),
                notes: Vec::new(),
                updated: d.clock,
                seq: d.seq,
            };
            d.tickets.insert(id, t);
            ids.push(id);
        }
        ids
    }

    /// An agent edits a ticket: `f` changes it, its update time moves.
    pub fn agent_edit(&self, id: u64, f: impl FnOnce(&mut Ticket)) {
        let mut d = self.lock();
        f(d.tickets.get_mut(&id).expect("ticket"));
        d.bump(id);
    }

    pub fn fault(&self, kind: Kind, nth: usize, fault: Fault) {
        self.lock().faults.insert((kind, nth), fault);
    }

    /// Requests of `kind` answered so far.
    pub fn count(&self, kind: Kind) -> usize {
        self.lock().counts.get(&kind).copied().unwrap_or(0)
    }

    pub fn answered(&self, kind: Kind, status: u16) -> usize {
        self.lock().log.iter().filter(|(k, s)| *k == kind && *s == status).count()
    }

    /// Export requests allowed per window of `reset`.
    pub fn rate_limit(&self, per_window: u32, reset: Duration) {
        let mut d = self.lock();
        d.rate = Some((per_window, reset));
        d.remaining = per_window;
    }

    pub fn ticket(&self, id: u64) -> Ticket {
        self.lock().tickets[&id].clone()
    }

    pub fn all(&self) -> Vec<Ticket> {
        self.lock().tickets.values().cloned().collect()
    }
}

type St = State<(Arc<Mutex<Desk>>, Flavor)>;

fn status(code: u16, body: Value) -> Response {
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// Auth, counting, rate limit and scheduled faults. `Err`: answer this now.
fn gate(desk: &Arc<Mutex<Desk>>, kind: Kind, headers: &HeaderMap) -> Result<Option<Fault>, Response> {
    let mut d = desk.lock().unwrap();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(d.auth.as_str()) {
        d.log.push((kind, 401));
        return Err(status(401, json!({"error": "Couldn't authenticate you"})));
    }
    let n = {
        let c = d.counts.entry(kind).or_insert(0);
        *c += 1;
        *c
    };
    if kind == Kind::Export {
        if let Some(until) = d.blocked_until {
            let now = Instant::now();
            if until > now {
                d.violations += 1;
                d.log.push((kind, 429));
                let mut r = status(429, json!({"error": "rate limited"}));
                let secs = (until - now).as_secs_f64().ceil() as u64;
                r.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
                return Err(r);
            }
            d.blocked_until = None;
        }
    }
    match d.faults.remove(&(kind, n)) {
        Some(Fault::TooMany(after)) => {
            d.log.push((kind, 429));
            let mut r = status(429, json!({"error": "Too Many Requests"}));
            r.headers_mut().insert("retry-after", HeaderValue::from(after));
            Err(r)
        }
        Some(Fault::ServerError) => {
            d.log.push((kind, 500));
            Err(status(500, json!({"error": "Internal Server Error"})))
        }
        other => Ok(other),
    }
}

/// Answer after processing: rate headers on exports, then the fault's delay.
async fn finish(desk: &Arc<Mutex<Desk>>, flavor: Flavor, kind: Kind, fault: Option<Fault>, mut resp: Response) -> Response {
    {
        let mut d = desk.lock().unwrap();
        d.log.push((kind, resp.status().as_u16()));
        if kind == Kind::Export {
            if let Some((per_window, reset)) = d.rate {
                d.remaining = d.remaining.saturating_sub(1);
                let remaining = d.remaining;
                let names: &[&str] = match flavor {
                    Flavor::Zendesk => &["x-rate-limit-remaining", "ratelimit-remaining"],
                    Flavor::Freshdesk => &["x-ratelimit-remaining"],
                };
                for name in names {
                    resp.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from(remaining));
                }
                if remaining == 0 {
                    resp.headers_mut().insert("ratelimit-reset", HeaderValue::from(reset.as_secs().max(1)));
                    d.blocked_until = Some(Instant::now() + reset);
                    d.remaining = per_window;
                }
            }
        }
        if matches!(fault, Some(Fault::HoldAfter)) {
            d.held = true;
        }
    }
    match fault {
        Some(Fault::Slow(t)) => tokio::time::sleep(t).await,
        Some(Fault::HoldAfter) => tokio::time::sleep(Duration::from_secs(600)).await,
        _ => {}
    }
    resp
}

/// HoldBefore: mark and never answer.
async fn hold_before(desk: &Arc<Mutex<Desk>>, fault: &Option<Fault>) {
    if matches!(fault, Some(Fault::HoldBefore)) {
        desk.lock().unwrap().held = true;
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

/// A read: gate, `body` from the desk (or an error answer), then `finish`.
async fn read(
    desk: Arc<Mutex<Desk>>,
    flavor: Flavor,
    kind: Kind,
    headers: &HeaderMap,
    body: impl FnOnce(&Desk) -> Result<Value, Response>,
) -> Response {
    let fault = match gate(&desk, kind, headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let body = match body(&desk.lock().unwrap()) {
        Ok(b) => b,
        Err(r) => return r,
    };
    finish(&desk, flavor, kind, fault, Json(body).into_response()).await
}

/// A write to ticket `id`: gate, a held fault, `apply` (the ticket then moves to the
/// end of the export), the answer made by `answer`, then `finish`.
async fn write(
    desk: Arc<Mutex<Desk>>,
    flavor: Flavor,
    kind: Kind,
    headers: &HeaderMap,
    id: Option<u64>,
    apply: impl FnOnce(&mut Ticket) -> Result<(), Response>,
    answer: impl FnOnce(&Ticket) -> Response,
) -> Response {
    let fault = match gate(&desk, kind, headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    hold_before(&desk, &fault).await;
    let resp = {
        let mut d = desk.lock().unwrap();
        let Some(id) = id.filter(|i| d.tickets.contains_key(i)) else { return status(404, json!({"error": "RecordNotFound"})) };
        if let Err(r) = apply(d.tickets.get_mut(&id).expect("ticket")) {
            return r;
        }
        d.bump(id);
        answer(&d.tickets[&id])
    };
    finish(&desk, flavor, kind, fault, resp).await
}

fn zd_json(t: &Ticket) -> Value {
    let fields: Vec<Value> =
        t.fields.iter().map(|(k, v)| json!({"id": k.parse::<u64>().unwrap_or(0), "value": v})).collect();
    json!({"id": t.id, "subject": t.subject, "description": t.description, "tags": t.tags, "custom_fields": fields,
        "updated_at": rfc3339(t.updated), "status": "open"})
}

async fn zd_export(State((desk, flavor)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    read(desk, flavor, Kind::Export, &headers, |d| {
        let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(1000);
        let mut list: Vec<&Ticket> = d.tickets.values().collect();
        list.sort_by_key(|t| t.seq);
        let after: Option<u64> = q.get("cursor").map(|c| c.trim_start_matches('c').parse().expect("our cursor"));
        let start: u64 = q.get("start_time").and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut page: Vec<&Ticket> =
            list.into_iter().filter(|t| after.map_or(t.updated >= start, |a| t.seq > a)).take(per_page + 1).collect();
        let more = page.len() > per_page;
        page.truncate(per_page);
        let after_cursor = page.last().map(|t| t.seq).or(after).unwrap_or(0);
        Ok(json!({"tickets": page.iter().map(|t| zd_json(t)).collect::<Vec<_>>(), "after_cursor": format!("c{after_cursor}"),
            "before_cursor": null, "end_of_stream": !more}))
    })
    .await
}

async fn zd_update(State((desk, flavor)): St, Path(file): Path<String>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let id = file.strip_suffix(".json").and_then(|i| i.parse().ok());
    let apply = |t: &mut Ticket| {
        let tk = &body["ticket"];
        for tag in tk["additional_tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
            if !t.tags.iter().any(|x| x == tag) {
                t.tags.push(tag.to_string());
            }
        }
        for f in tk["custom_fields"].as_array().into_iter().flatten() {
            t.fields.insert(f["id"].to_string(), f["value"].clone());
        }
        if tk["comment"]["public"] == json!(false) {
            t.notes.push(tk["comment"]["body"].as_str().unwrap_or_default().to_string());
        }
        Ok(())
    };
    write(desk, flavor, Kind::Write, &headers, id, apply, |t| Json(json!({"ticket": zd_json(t)})).into_response()).await
}

async fn zd_comments(State((desk, flavor)): St, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    read(desk, flavor, Kind::Read, &headers, |d| {
        let Some(t) = d.tickets.get(&id) else { return Err(status(404, json!({"error": "RecordNotFound"}))) };
        let mut comments = vec![json!({"id": 1, "body": t.description, "public": true})];
        comments.extend(t.notes.iter().enumerate().map(|(i, n)| json!({"id": i + 2, "body": n, "public": false})));
        Ok(json!({"comments": comments, "next_page": null}))
    })
    .await
}

fn fd_json(t: &Ticket) -> Value {
    json!({"id": t.id, "subject": t.subject, "description": format!("<div>{}</div>", t.description),
        "description_text": t.description, "tags": t.tags, "custom_fields": t.fields, "updated_at": rfc3339(t.updated)})
}

async fn fd_list(State((desk, flavor)): St, Query(q): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    read(desk, flavor, Kind::Export, &headers, |d| {
        let documented = q.get("order_by").map(String::as_str) == Some("updated_at")
            && q.get("order_type").map(String::as_str) == Some("asc")
            && q.get("include").map(String::as_str) == Some("description");
        let Some(since) = q.get("updated_since").and_then(|s| parse_rfc3339(s)).filter(|_| documented) else {
            return Err(status(400, json!({"description": "Validation failed", "errors": [{"field": "updated_since"}]})));
        };
        let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30).min(100);
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
        let mut list: Vec<&Ticket> = d.tickets.values().filter(|t| t.updated >= since).collect();
        list.sort_by_key(|t| (t.updated, t.id));
        Ok(Value::Array(list.iter().skip((page - 1) * per_page).take(per_page).map(|t| fd_json(t)).collect()))
    })
    .await
}

async fn fd_update(State((desk, flavor)): St, Path(id): Path<u64>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let apply = |t: &mut Ticket| {
        if let Some(tags) = body["tags"].as_array() {
            t.tags = tags.iter().filter_map(|x| x.as_str().map(str::to_string)).collect();
        }
        for (k, v) in body["custom_fields"].as_object().into_iter().flatten() {
            t.fields.insert(k.clone(), v.clone());
        }
        Ok(())
    };
    write(desk, flavor, Kind::Write, &headers, Some(id), apply, |t| Json(fd_json(t)).into_response()).await
}

async fn fd_note(State((desk, flavor)): St, Path(id): Path<u64>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let apply = |t: &mut Ticket| {
        if body["private"] != json!(true) {
            return Err(status(400, json!({"description": "notes from triage must be private"})));
        }
        t.notes.push(body["body"].as_str().unwrap_or_default().to_string());
        Ok(())
    };
    let answer = |t: &Ticket| (StatusCode::CREATED, Json(json!({"id": 1000 + t.id, "private": true, "ticket_id": t.id}))).into_response();
    write(desk, flavor, Kind::Note, &headers, Some(id), apply, answer).await
}

async fn fd_conversations(
    State((desk, flavor)): St,
    Path(id): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    read(desk, flavor, Kind::Read, &headers, |d| {
        let Some(t) = d.tickets.get(&id) else { return Err(status(404, json!({"code": "access_denied"}))) };
        let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
        Ok(Value::Array(
            t.notes
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|n| json!({"body": n, "body_text": n.replace("<br>", ""), "private": true}))
                .collect(),
        ))
    })
    .await
}

#[test]
fn base64_matches_the_standard() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
    assert_eq!(base64(b"user:X"), "dXNlcjpY");
}
