//! Helpdesk integration both ways: pull tickets from a helpdesk (`triage pull`),
//! classify them, write the result back (tags, a category field, an internal note),
//! and learn from agents who move a ticket to another category.
//!
//! - [`TicketSource`]: the role a helpdesk plays (Zendesk in [`zendesk`], Freshdesk
//!   in [`freshdesk`]): export pages of changed tickets from a cursor, write a result
//!   back, tell whether a note of ours is already on a ticket.
//! - [`state`]: the durable cursor and per-ticket ledger (text hash, what was
//!   written back, the agent's label), for both store backends.
//! - [`pull`]: the loop that ties them together, with exactly-once effect.
//! - [`correction`]: agents' category changes turned into labeled examples (shared
//!   with the push path, `POST /v1/webhooks/ticket`).
//! - [`writeback`]: what is written back (tags, field value, note), neutral of the helpdesk.
//! - [`report`]: what a run did (printed) and the counters of a long-running pull (`/metrics`).
//! - [`http`]: one HTTP client with credentials, retries, `Retry-After` and rate-limit pacing.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod correction;
pub mod freshdesk;
pub mod http;
pub mod pull;
pub mod report;
pub mod state;
pub mod writeback;
pub mod zendesk;

pub use correction::{CorrectionCounts, Observed};
pub use state::{HelpdeskState, LedgerEntry, StateKey};
pub use writeback::WriteBack;

/// What went wrong talking to a helpdesk, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum HelpdeskError {
    /// 401/403: the credentials or their scope; retrying will not help.
    #[error("{helpdesk} refused the credentials ({status}) for {what}: {hint}")]
    Auth { helpdesk: &'static str, status: u16, what: String, hint: String },
    /// Retries ran out on 429/5xx/timeouts/connection errors: try the whole run again later.
    #[error("{helpdesk} {what}: gave up after {attempts} attempts: {last}")]
    Unavailable { helpdesk: &'static str, what: String, attempts: u32, last: String },
    /// A write that is not safe to repeat (it adds a note) failed in a way that leaves
    /// open whether it was applied (5xx, timeout, connection lost): look before repeating.
    #[error("{helpdesk} {what}: outcome unknown ({detail})")]
    Uncertain { helpdesk: &'static str, what: String, detail: String },
    /// 404: the ticket is gone.
    #[error("{helpdesk} {what}: not found (404)")]
    NotFound { helpdesk: &'static str, what: String },
    /// Another 4xx: this request will never pass as it is (validation, closed ticket).
    #[error("{helpdesk} rejected {what} ({status}): {body}")]
    Rejected { helpdesk: &'static str, what: String, status: u16, body: String },
    /// A 2xx answer we cannot read.
    #[error("{helpdesk} {what}: unexpected answer: {detail}")]
    BadResponse { helpdesk: &'static str, what: String, detail: String },
    /// Missing or contradictory settings (credentials, URLs, field ids).
    #[error("{0}")]
    Config(String),
}

/// How tickets are read and written.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub base_url: String,
    /// Ticket fields joined into the text (dotted paths into the ticket JSON).
    pub text_fields: Vec<String>,
    /// Custom field for the category: a Zendesk field id, a Freshdesk `cf_` name.
    pub category_field: Option<String>,
    /// Tickets per export page.
    pub page_size: usize,
    pub retry: http::RetryPolicy,
}

/// A ticket as the pull loop needs it, whatever the helpdesk.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpdeskTicket {
    pub id: String,
    /// The configured text fields (default subject + description), joined by a blank line.
    pub text: String,
    pub tags: Vec<String>,
    /// The category custom field's current value, when one is configured and set.
    pub category_value: Option<String>,
    /// As the helpdesk reports it (Unix seconds or RFC 3339); only the cursor reads it.
    pub updated_at: String,
}

/// One page of an export: tickets, the cursor after them, and whether this was the
/// end of the stream for now.
#[derive(Debug, Clone)]
pub struct Page {
    pub tickets: Vec<HelpdeskTicket>,
    /// Where the next page starts; opaque, stored as it is. The loop hands back
    /// whether tickets of this page were written to, which moves page-based cursors.
    pub next: Cursor,
    pub end_of_stream: bool,
}

/// A position in a helpdesk's export, opaque outside the source that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub serde_json::Value);

/// The role a helpdesk plays. Object-safe; the pull loop holds it as `&dyn`.
#[async_trait]
pub trait TicketSource: Send + Sync {
    /// `zendesk`, `freshdesk`: the source name in example ids and metrics.
    fn kind(&self) -> &'static str;
    /// Identifies this helpdesk account in the state store (kind and host).
    fn state_name(&self) -> String;
    /// The first cursor of a run without a stored one: tickets updated since `since` (Unix seconds).
    fn start(&self, since: u64) -> Cursor;
    /// The page at `cursor`.
    async fn fetch(&self, cursor: &Cursor) -> Result<Page, HelpdeskError>;
    /// The cursor after a page once its tickets are handled, and whether the stream
    /// ends there for now; `wrote` says whether any of them was written to
    /// (page-based exports shift when tickets move).
    fn advance(&self, page: &Page, wrote: bool) -> (Cursor, bool) {
        let _ = wrote;
        (page.next.clone(), page.end_of_stream)
    }
    /// Apply a write-back. Repeating it must be harmless apart from the note, which
    /// the caller guards with [`TicketSource::has_note`].
    async fn write_back(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Result<(), HelpdeskError>;
    /// Whether the ticket already carries a note with `marker` (after a crash between
    /// writing and recording).
    async fn has_note(&self, ticket_id: &str, marker: &str) -> Result<bool, HelpdeskError>;
    /// The exact requests `write_back` would send, for `--dry-run`: method, path, JSON body.
    fn describe(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Vec<serde_json::Value>;
    /// Error when a ticket cannot be handled as it is (an id this helpdesk's URLs
    /// cannot carry): the pull loop skips it, counted, and moves on.
    fn check_ticket(&self, ticket: &HelpdeskTicket) -> Result<(), HelpdeskError> {
        let _ = ticket;
        Ok(())
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    crate::store::now_secs()
}

/// `2026-11-26T10:14:38Z` for Unix seconds (UTC).
pub fn rfc3339(secs: u64) -> String {
    crate::eval::report::timestamp(secs)
}

/// Unix seconds of `2026-11-26T10:14:38Z` (also `+00:00`, fractional seconds dropped).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z').trim_end_matches("+00:00");
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next().flatten().unwrap_or(0));
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// `90`, `90s`, `15m`, `2h`, `7d` as a number of seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 60s, 15m, 2h, 7d)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_688_078), "2026-11-26T10:14:38Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_795_688_078, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2026-11-26T10:14:38.123+00:00"), Some(1_795_688_078));
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("60s"), Ok(60));
        assert_eq!(parse_duration_secs("90"), Ok(90));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("2h"), Ok(7200));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert!(parse_duration_secs("soon").is_err());
        assert!(parse_duration_secs("5w").is_err());
    }
}
