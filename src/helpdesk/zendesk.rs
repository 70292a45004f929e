//! Zendesk Support: the cursor-based incremental ticket export
//! (`GET /api/v2/incremental/tickets/cursor.json`, `start_time` on the first request,
//! then `cursor=<after_cursor>` until `end_of_stream`) and write-back in one request
//! per ticket (`PUT /api/v2/tickets/{id}.json` with `additional_tags`, the category
//! custom field and an internal note, `comment.public = false`). Basic auth
//! `{ZENDESK_EMAIL}/token:{ZENDESK_API_TOKEN}`.

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use super::http::{env_secret, HelpdeskHttp, Secret};
use super::writeback::slug;
use super::{Cursor, HelpdeskError, HelpdeskTicket, Page, SourceSettings, TicketSource, WriteBack};

const EXPORT: &str = "/api/v2/incremental/tickets/cursor.json";
/// Comment pages read when looking for our note.
const MAX_COMMENT_PAGES: usize = 50;

#[derive(Debug)]
pub struct Zendesk {
    http: HelpdeskHttp,
    text_fields: Vec<String>,
    category_field: Option<u64>,
    page_size: usize,
}

impl Zendesk {
    pub const DEFAULT_TEXT_FIELDS: [&'static str; 2] = ["subject", "description"];

    /// Credentials from `ZENDESK_EMAIL` and `ZENDESK_API_TOKEN`.
    pub fn from_env(s: &SourceSettings) -> Result<Self, HelpdeskError> {
        let email = env_secret("ZENDESK_EMAIL", "the email address of the agent whose API token is used")?;
        let token = env_secret("ZENDESK_API_TOKEN", "a Zendesk API token")?;
        let user = email.map(|e| format!("{e}/token"));
        Self::new(s, user, token)
    }

    pub fn new(s: &SourceSettings, user: Secret, token: Secret) -> Result<Self, HelpdeskError> {
        let category_field = match &s.category_field {
            None => None,
            Some(f) => Some(f.trim().parse::<u64>().map_err(|_| {
                HelpdeskError::Config(format!("--category-field {f:?}: a Zendesk custom field id is a number"))
            })?),
        };
        let hint = "check ZENDESK_EMAIL and ZENDESK_API_TOKEN (token access enabled, an agent who can see and edit these tickets)";
        Ok(Zendesk {
            http: HelpdeskHttp::new("zendesk", &s.base_url, user, token, hint, s.retry)?,
            text_fields: s.text_fields.clone(),
            category_field,
            page_size: s.page_size.clamp(1, 1000),
        })
    }

    fn ticket(&self, v: &Value) -> Option<HelpdeskTicket> {
        let id = match &v["id"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => return None,
        };
        let category_value = self.category_field.and_then(|field| {
            v["custom_fields"]
                .as_array()?
                .iter()
                .find(|f| f["id"].as_u64() == Some(field))
                .and_then(|f| text_of(&f["value"]))
        });
        Some(HelpdeskTicket {
            id,
            text: join_fields(v, &self.text_fields),
            tags: v["tags"].as_array().map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()).unwrap_or_default(),
            category_value,
            updated_at: text_of(&v["updated_at"]).unwrap_or_default(),
        })
    }

    fn export_url(&self, cursor: &Cursor) -> Result<String, HelpdeskError> {
        let mut url = reqwest::Url::parse(&format!("{}{EXPORT}", self.http.base()))
            .map_err(|e| HelpdeskError::Config(format!("--base-url: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            match (&cursor.0["cursor"], &cursor.0["start_time"]) {
                (Value::String(c), _) => q.append_pair("cursor", c),
                (_, Value::Number(t)) => q.append_pair("start_time", &t.to_string()),
                _ => {
                    return Err(HelpdeskError::Config(format!(
                        "the stored Zendesk cursor {} is not one this version wrote",
                        cursor.0
                    )))
                }
            };
            q.append_pair("per_page", &self.page_size.to_string());
        }
        Ok(url.to_string())
    }

    fn payload(&self, write: &WriteBack) -> Value {
        let mut ticket = json!({
            "additional_tags": write.tags,
            "comment": {"body": write.note, "public": false},
        });
        if let (Some(field), Some(category)) = (self.category_field, &write.category) {
            ticket["custom_fields"] = json!([{"id": field, "value": slug(category)}]);
        }
        json!({ "ticket": ticket })
    }
}

/// A JSON string or number as text; other values (null, arrays) as none.
pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The values at `fields` (dotted paths), joined by a blank line; missing ones skipped.
pub(super) fn join_fields(v: &Value, fields: &[String]) -> String {
    fields
        .iter()
        .filter_map(|f| f.split('.').try_fold(v, |v, k| v.get(k)).and_then(text_of))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Ticket ids go into URL paths: digits only.
pub(super) fn check_id(helpdesk: &str, id: &str) -> Result<(), HelpdeskError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(HelpdeskError::Config(format!("{helpdesk} ticket id {id:?} is not a number")));
    }
    Ok(())
}

#[async_trait]
impl TicketSource for Zendesk {
    fn kind(&self) -> &'static str {
        "zendesk"
    }

    fn state_name(&self) -> String {
        format!("zendesk-{}", self.http.host())
    }

    fn start(&self, since: u64) -> Cursor {
        Cursor(json!({ "start_time": since }))
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<Page, HelpdeskError> {
        let url = self.export_url(cursor)?;
        let v = self.http.request(Method::GET, &url, None, "incremental ticket export").await?;
        let bad = |detail: &str| HelpdeskError::BadResponse {
            helpdesk: "zendesk",
            what: "incremental ticket export".into(),
            detail: detail.to_string(),
        };
        let raw = v["tickets"].as_array().ok_or_else(|| bad("no \"tickets\" array"))?;
        let tickets = raw
            .iter()
            .filter(|t| t["status"].as_str() != Some("deleted"))
            .filter_map(|t| self.ticket(t))
            .collect();
        let next = match v["after_cursor"].as_str() {
            Some(c) if !c.is_empty() => Cursor(json!({ "cursor": c })),
            _ => cursor.clone(),
        };
        let end_of_stream = v["end_of_stream"].as_bool().unwrap_or(next == *cursor);
        Ok(Page { tickets, next, end_of_stream })
    }

    async fn write_back(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Result<(), HelpdeskError> {
        check_id("zendesk", &ticket.id)?;
        let path = format!("/api/v2/tickets/{}.json", ticket.id);
        let what = format!("update of ticket {}", ticket.id);
        let body = self.payload(write);
        // The update carries the note: repeat it only after checking the note is not there.
        self.http
            .write_checked(
                || async { self.http.request_once(Method::PUT, &path, Some(&body), &what).await.map(|_| ()) },
                || self.has_note(&ticket.id, &write.marker),
            )
            .await
    }

    async fn has_note(&self, ticket_id: &str, marker: &str) -> Result<bool, HelpdeskError> {
        check_id("zendesk", ticket_id)?;
        let mut next = Some(format!("/api/v2/tickets/{ticket_id}/comments.json"));
        let what = format!("comments of ticket {ticket_id}");
        for _ in 0..MAX_COMMENT_PAGES {
            let Some(url) = next.take() else { break };
            let v = self.http.request(Method::GET, &url, None, &what).await?;
            let found = v["comments"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    ["body", "plain_body", "html_body"].iter().any(|k| c[*k].as_str().is_some_and(|b| b.contains(marker)))
                })
            });
            if found {
                return Ok(true);
            }
            next = v["next_page"].as_str().filter(|u| !u.is_empty()).map(str::to_string);
        }
        Ok(false)
    }

    fn check_ticket(&self, ticket: &HelpdeskTicket) -> Result<(), HelpdeskError> {
        check_id("zendesk", &ticket.id)
    }

    fn describe(&self, ticket: &HelpdeskTicket, write: &WriteBack) -> Vec<Value> {
        vec![json!({
            "method": "PUT",
            "path": format!("/api/v2/tickets/{}.json", ticket.id),
            "body": self.payload(write),
        })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpdesk::http::RetryPolicy;

    fn zendesk(field: Option<&str>) -> Zendesk {
        let s = SourceSettings {
            base_url: "https://acme.zendesk.com".into(),
            text_fields: vec!["subject".into(), "description".into()],
            category_field: field.map(str::to_string),
            page_size: 100,
            retry: RetryPolicy::default(),
        };
        Zendesk::new(&s, Secret::new("a@b.c/token"), Secret::new("t")).unwrap()
    }

    #[test]
    fn tickets_are_read_from_the_export_shape() {
        let z = zendesk(Some("360001"));
        let t = z
            .ticket(&json!({"id": 35436, "subject": "Charged twice", "description": " I was charged twice. ",
                "tags": ["vip", "triage_billing"], "custom_fields": [{"id": 1, "value": "x"}, {"id": 360001, "value": "billing"}],
                "updated_at": "2026-11-26T10:00:00Z", "status": "open"}))
            .unwrap();
        assert_eq!(t.id, "35436");
        assert_eq!(t.text, "Charged twice\n\nI was charged twice.");
        assert_eq!(t.tags, ["vip", "triage_billing"]);
        assert_eq!(t.category_value.as_deref(), Some("billing"));
        assert_eq!(zendesk(None).ticket(&json!({"id": 1, "custom_fields": [{"id": 360001, "value": "billing"}]})).unwrap().category_value, None);
        assert!(z.ticket(&json!({"subject": "no id"})).is_none());
    }

    #[test]
    fn the_write_back_payload() {
        let w = WriteBack {
            tags: vec!["triage_feature_request".into(), "triage_needs_review".into()],
            category: Some("Feature Request".into()),
            note: "Triage: Feature Request\ntriage-ref: 0123".into(),
            marker: "triage-ref: 0123".into(),
        };
        assert_eq!(
            zendesk(Some("360001")).payload(&w),
            json!({"ticket": {
                "additional_tags": ["triage_feature_request", "triage_needs_review"],
                "custom_fields": [{"id": 360001, "value": "feature_request"}],
                "comment": {"body": "Triage: Feature Request\ntriage-ref: 0123", "public": false}
            }})
        );
        assert!(zendesk(None).payload(&w)["ticket"].get("custom_fields").is_none());
        assert!(Zendesk::new(
            &SourceSettings { category_field: Some("cf_x".into()), ..zendesk_settings() },
            Secret::new("u"),
            Secret::new("p")
        )
        .is_err());
    }

    fn zendesk_settings() -> SourceSettings {
        SourceSettings {
            base_url: "https://acme.zendesk.com".into(),
            text_fields: vec![],
            category_field: None,
            page_size: 5000,
            retry: RetryPolicy::default(),
        }
    }

    #[test]
    fn export_urls_start_from_a_time_then_follow_the_cursor() {
        let z = Zendesk::new(&zendesk_settings(), Secret::new("u"), Secret::new("p")).unwrap();
        assert_eq!(
            z.export_url(&z.start(1_700_000_000)).unwrap(),
            "https://acme.zendesk.com/api/v2/incremental/tickets/cursor.json?start_time=1700000000&per_page=1000"
        );
        assert_eq!(
            z.export_url(&Cursor(json!({"cursor": "MTU3NjYxMzUzOS4wfHw0NTF8"}))).unwrap(),
            "https://acme.zendesk.com/api/v2/incremental/tickets/cursor.json?cursor=MTU3NjYxMzUzOS4wfHw0NTF8&per_page=1000"
        );
        assert!(z.export_url(&Cursor(json!({"page": 2}))).is_err());
        assert!(check_id("zendesk", "12/../x").is_err());
    }
}
