//! Freshdesk: the ticket list ordered by update time
//! (`GET /api/v2/tickets?updated_since=...&order_by=updated_at&order_type=asc&per_page=N&page=P&include=description`)
//! and write-back in two requests (`PUT /api/v2/tickets/{id}` with the tags, ours
//! added to the ticket's, and the category custom field; then
//! `POST /api/v2/tickets/{id}/notes` with a private note). Basic auth
//! `{FRESHDESK_API_KEY}:X`.
//!
//! Page numbers shift when tickets move (every write moves a ticket to the end of
//! the order), so the cursor is an update time, and the next request starts at the
//! last update time seen, page 1, inclusive (tickets seen twice are skipped by the
//! ledger). Only a full page of tickets sharing one update second needs page 2, 3,
//! ...; if tickets of such a block were written to while walking it, the block is
//! walked again from page 1 until a walk writes nothing, so no ticket of it is skipped.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use super::http::{env_secret, HelpdeskHttp, Secret};
use super::zendesk::{check_id, join_fields, text_of};
use super::{parse_rfc3339, rfc3339, Cursor, HelpdeskError, HelpdeskTicket, Page, SourceSettings, TicketSource, WriteBack};

/// Conversation pages read when looking for our note.
const MAX_NOTE_PAGES: u32 = 50;

#[derive(Debug)]
pub struct Freshdesk {
    http: HelpdeskHttp,
    text_fields: Vec<String>,
    category_field: Option<String>,
    page_size: usize,
}

/// The stored cursor: an update time (inclusive), a page within it, and whether
/// tickets of a same-second block were written while walking it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Position {
    since: u64,
    page: u32,
    block_writes: bool,
}

impl Position {
    fn read(c: &Cursor) -> Option<Position> {
        Some(Position {
            since: parse_rfc3339(c.0["updated_since"].as_str()?)?,
            page: u32::try_from(c.0["page"].as_u64().unwrap_or(1)).ok()?.max(1),
            block_writes: c.0["block_writes"].as_bool().unwrap_or(false),
        })
    }

    fn cursor(&self) -> Cursor {
        Cursor(json!({"updated_since": rfc3339(self.since), "page": self.page, "block_writes": self.block_writes}))
    }
}

/// What a page showed, for [`next_position`].
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    /// As many tickets as asked for (there may be more).
    full: bool,
    /// The latest update time on the page.
    last: Option<u64>,
    /// Every ticket on it has update time `since`.
    all_at_since: bool,
}

/// The position after a page and whether the stream ends there for now.
fn next_position(at: Position, seen: Seen, wrote: bool) -> (Position, bool) {
    let block_writes = at.block_writes || wrote;
    let last = seen.last.unwrap_or(at.since).max(at.since);
    if seen.full && seen.all_at_since {
        // Inside a block of one update second: walk on by page number.
        return (Position { since: at.since, page: at.page + 1, block_writes }, false);
    }
    if at.page > 1 && block_writes {
        // Leaving a block whose pages may have shifted under us: walk it again.
        return (Position { since: at.since, page: 1, block_writes: false }, false);
    }
    let next = Position { since: last, page: 1, block_writes: false };
    (next, !seen.full)
}

impl Freshdesk {
    pub const DEFAULT_TEXT_FIELDS: [&'static str; 2] = ["subject", "description_text"];

    /// The API key from `FRESHDESK_API_KEY` (the basic-auth user; the password is `X`).
    pub fn from_env(s: &SourceSettings) -> Result<Self, HelpdeskError> {
        let key = env_secret("FRESHDESK_API_KEY", "the API key of a Freshdesk agent (Profile settings > View API key)")?;
        Self::new(s, key)
    }

    pub fn new(s: &SourceSettings, key: Secret) -> Result<Self, HelpdeskError> {
        if let Some(f) = &s.category_field {
            if !f.starts_with("cf_") {
                return Err(HelpdeskError::Config(format!(
                    "--category-field {f:?}: Freshdesk custom fields are named cf_<name> (see Admin > Ticket Fields)"
                )));
            }
        }
        let hint = "check FRESHDESK_API_KEY (an agent's API key with access to these tickets)";
        Ok(Freshdesk {
            http: HelpdeskHttp::new("freshdesk", &s.base_url, key, Secret::new("X"), hint, s.retry)?,
            text_fields: s.text_fields.clone(),
            category_field: s.category_field.clone(),
            page_size: s.page_size.clamp(1, 100),
        })
    }

    fn ticket(&self, v: &Value) -> Option<HelpdeskTicket> {
        let id = text_of(&v["id"])?;
        let category_value = self.category_field.as_ref().and_then(|f| text_of(&v["custom_fields"][f.as_str()]));
        Some(HelpdeskTicket {
            id,
            text: join_fields(v, &self.text_fields),
            tags: v["tags"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()).unwrap_or_default(),
            category_value,
            updated_at: text_of(&v["updated_at"]).unwrap_or_default(),
        })
    }

    fn list_url(&self, at: Position) -> Result<String, HelpdeskError> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v2/tickets", self.http.base()))
            .map_err(|e| HelpdeskError::Config(format!("--base-url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("updated_since", &rfc3339(at.since))
            .append_pair("order_by", "updated_at")
            .append_pair("order_type", "asc")
            .append_pair("per_page", &self.page_size.to_string())
            .append_pair("page", &at.page.to_string())
            .append_pair("include", "description");
        Ok(url.to_string())
    }

    /// The ticket update: all tags (Freshdesk replaces the list), the category field.
    fn update(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Value {
        let mut tags: Vec<String> = ticket.tags.clone();
        for t in &write.tags {
            if !tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                tags.push(t.clone());
            }
        }
        let mut body = json!({ "tags": tags });
        if let (Some(field), Some(category)) = (&self.category_field, &write.category) {
            body["custom_fields"] = json!({ field.as_str(): category });
        }
        body
    }

    fn note(write: &WriteBack) -> Value {
        json!({ "body": write.note_html(), "private": true })
    }
}

#[async_trait]
impl TicketSource for Freshdesk {
    fn kind(&self) -> &'static str {
        "freshdesk"
    }

    fn state_name(&self) -> String {
        format!("freshdesk-{}", self.http.host())
    }

    fn start(&self, since: u64) -> Cursor {
        Position { since, page: 1, block_writes: false }.cursor()
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, HelpdeskError> {
        let at = Position::read(cursor).ok_or_else(|| {
            HelpdeskError::Config(format!("the stored Freshdesk cursor {} is not one this version wrote", cursor.0))
        })?;
        let v = self.http.request(Method::GET, &self.list_url(at)?, None, "ticket list").await?;
        let raw = v.as_array().ok_or_else(|| HelpdeskError::BadResponse {
            helpdesk: "freshdesk",
            what: "ticket list".into(),
            detail: "not a JSON array of tickets".into(),
        })?;
        let times: Vec<Option<u64>> = raw.iter().map(|t| t["updated_at"].as_str().and_then(parse_rfc3339)).collect();
        let seen = Seen {
            full: raw.len() >= self.page_size,
            last: times.iter().flatten().copied().max(),
            all_at_since: !times.is_empty() && times.iter().all(|t| *t == Some(at.since)),
        };
        let tickets = raw.iter().filter_map(|t| self.ticket(t)).collect();
        // The position and what the page showed; `advance` decides once it knows about writes.
        let mut stash = at.cursor();
        stash.0["seen"] = json!({"full": seen.full, "last": seen.last, "all_at_since": seen.all_at_since});
        Ok(Page { tickets, next: stash, end_of_stream: next_position(at, seen, false).1 })
    }

    fn advance(&self, page: &Page, wrote: bool) -> (Cursor, bool) {
        let (Some(at), s) = (Position::read(&page.next), &page.next.0["seen"]) else {
            return (page.next.clone(), true);
        };
        let seen = Seen {
            full: s["full"].as_bool().unwrap_or(false),
            last: s["last"].as_u64(),
            all_at_since: s["all_at_since"].as_bool().unwrap_or(false),
        };
        let (next, end) = next_position(at, seen, wrote);
        (next.cursor(), end)
    }

    fn check_ticket(&self, ticket: &HelpdeskTicket) -> Result<(), HelpdeskError> {
        check_id("freshdesk", &ticket.id)
    }

    async fn write_back(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Result<(), HelpdeskError> {
        check_id("freshdesk", &ticket.id)?;
        let id = &ticket.id;
        self.http
            .request(Method::PUT, &format!("/api/v2/tickets/{id}"), Some(&self.update(ticket, write)), &format!("update of ticket {id}"))
            .await?;
        let (path, note, what) = (format!("/api/v2/tickets/{id}/notes"), Self::note(write), format!("note on ticket {id}"));
        self.http
            .write_checked(
                || async { self.http.request_once(Method::POST, &path, Some(&note), &what).await.map(|_| ()) },
                || self.has_note(id, &write.marker),
            )
            .await
    }

    async fn has_note(&self, ticket_id: &str, marker: &str) -> Result<bool, HelpdeskError> {
        check_id("freshdesk", ticket_id)?;
        let what = format!("conversations of ticket {ticket_id}");
        for page in 1..=MAX_NOTE_PAGES {
            let path = format!("/api/v2/tickets/{ticket_id}/conversations?per_page=100&page={page}");
            let v = self.http.request(Method::GET, &path, None, &what).await?;
            let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
            if items.iter().any(|c| ["body", "body_text"].iter().any(|k| c[*k].as_str().is_some_and(|b| b.contains(marker)))) {
                return Ok(true);
            }
            if items.len() < 100 {
                break;
            }
        }
        Ok(false)
    }

    fn describe(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Vec<Value> {
        vec![
            json!({"method": "PUT", "path": format!("/api/v2/tickets/{}", ticket.id), "body": self.update(ticket, write)}),
            json!({"method": "POST", "path": format!("/api/v2/tickets/{}/notes", ticket.id), "body": Self::note(write)}),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpdesk::http::RetryPolicy;

    fn freshdesk(field: Option<&str>, page_size: usize) -> Freshdesk {
        let s = SourceSettings {
            base_url: "https://acme.freshdesk.com".into(),
            text_fields: Freshdesk::DEFAULT_TEXT_FIELDS.iter().map(|s| s.to_string()).collect(),
            category_field: field.map(str::to_string),
            page_size,
            retry: RetryPolicy::default(),
        };
        Freshdesk::new(&s, Secret::new("key")).unwrap()
    }

    #[test]
    fn the_update_keeps_the_agents_tags_and_the_note_is_private_html() {
        let f = freshdesk(Some("cf_triage_category"), 100);
        let t = f
            .ticket(&json!({"id": 12, "subject": "Refund", "description_text": "Charged twice", "description": "<div>x</div>",
                "tags": ["vip", "Triage_Billing"], "custom_fields": {"cf_triage_category": "Billing"}, "updated_at": "2026-11-26T10:00:00Z"}))
            .unwrap();
        assert_eq!((t.id.as_str(), t.text.as_str(), t.category_value.as_deref()), ("12", "Refund\n\nCharged twice", Some("Billing")));
        let w = WriteBack {
            tags: vec!["triage_billing".into(), "triage_needs_review".into()],
            category: Some("Billing".into()),
            note: "Triage: Billing <ok>\ntriage-ref: ab".into(),
            marker: "triage-ref: ab".into(),
        };
        assert_eq!(
            f.update(&t, &w),
            json!({"tags": ["vip", "Triage_Billing", "triage_needs_review"], "custom_fields": {"cf_triage_category": "Billing"}})
        );
        assert_eq!(Freshdesk::note(&w), json!({"body": "Triage: Billing &lt;ok&gt;<br>\ntriage-ref: ab", "private": true}));
        let calls = f.describe(&t, &w);
        assert_eq!((calls[0]["method"].as_str(), calls[1]["path"].as_str()), (Some("PUT"), Some("/api/v2/tickets/12/notes")));
        assert!(Freshdesk::new(&SourceSettings { category_field: Some("category".into()), ..settings() }, Secret::new("k")).is_err());
    }

    fn settings() -> SourceSettings {
        SourceSettings {
            base_url: "https://acme.freshdesk.com".into(),
            text_fields: vec![],
            category_field: None,
            page_size: 100,
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn list_urls_carry_the_documented_parameters() {
        let f = freshdesk(None, 30);
        assert_eq!(
            f.list_url(Position { since: 1_795_688_078, page: 2, block_writes: false }).unwrap(),
            "https://acme.freshdesk.com/api/v2/tickets?updated_since=2026-11-26T10%3A14%3A38Z&order_by=updated_at\
             &order_type=asc&per_page=30&page=2&include=description"
        );
        let c = f.start(1_795_688_078);
        assert_eq!(Position::read(&c), Some(Position { since: 1_795_688_078, page: 1, block_writes: false }));
    }

    fn at(since: u64, page: u32, block_writes: bool) -> Position {
        Position { since, page, block_writes }
    }

    #[test]
    fn the_cursor_moves_by_update_time_and_walks_same_second_blocks_again_after_writes() {
        let seen = |full, last: Option<u64>, all| Seen { full, last, all_at_since: all };
        // A full page reaching later times: go on from its last time, page 1.
        assert_eq!(next_position(at(100, 1, false), seen(true, Some(150), false), true), (at(150, 1, false), false));
        // A short page: the end for now, resuming from its last time.
        assert_eq!(next_position(at(100, 1, false), seen(false, Some(120), false), true), (at(120, 1, false), true));
        assert_eq!(next_position(at(100, 1, false), seen(false, None, false), false), (at(100, 1, false), true));
        // A full page all in one second: the next page of that second, remembering writes.
        assert_eq!(next_position(at(100, 1, false), seen(true, Some(100), true), true), (at(100, 2, true), false));
        assert_eq!(next_position(at(100, 2, false), seen(true, Some(100), true), false), (at(100, 3, false), false));
        // Leaving a block that was written to: walk it again from page 1.
        assert_eq!(next_position(at(100, 2, true), seen(false, Some(100), true), false), (at(100, 1, false), false));
        assert_eq!(next_position(at(100, 3, false), seen(true, Some(140), false), true), (at(100, 1, false), false));
        // Leaving a block nobody wrote to: on.
        assert_eq!(next_position(at(100, 2, false), seen(true, Some(140), false), false), (at(140, 1, false), false));
        assert_eq!(next_position(at(100, 2, false), seen(false, Some(100), true), false), (at(100, 1, false), true));
    }
}
