//! Every `error.code` the API returns, with its status and meaning: listed in
//! `/openapi.json` (as the enum of `ErrorDetail.code`) and checked against the codes
//! the serve sources construct (a unit test reads them).

/// (code, HTTP status, meaning).
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("invalid_json", 400, "the body is not valid JSON"),
    ("unreadable_body", 400, "the body could not be read"),
    ("body_timeout", 408, "the body did not arrive within --body-timeout"),
    ("unauthorized", 401, "missing or wrong bearer token (TRIAGE_API_KEY)"),
    ("foreign_host", 403, "the Host header names another host (loopback-only server)"),
    ("foreign_origin", 403, "a browser request from another origin (loopback-only server)"),
    ("not_found", 404, "no such route"),
    ("unknown_collection", 404, "no collection of that name"),
    ("unknown_example", 404, "no example with that id"),
    ("unknown_review_item", 404, "no review item with that id in the collection's queue"),
    ("review_resolved", 409, "the review item was already resolved (accepted, corrected or dismissed)"),
    ("method_not_allowed", 405, "the route does not take this method"),
    ("refit_running", 409, "a refit of this collection is already running"),
    ("doctor_running", 409, "an examination of this collection is already running"),
    ("body_too_large", 413, "the body is larger than --max-body"),
    ("batch_too_large", 413, "more tickets than --max-batch"),
    ("too_many_examples", 413, "more examples than one request may add"),
    ("unsupported_media_type", 415, "the body is not application/json"),
    ("invalid_request", 422, "well-formed JSON of the wrong shape"),
    ("invalid_input", 422, "a field holds a value of the wrong type"),
    ("empty_text", 422, "the ticket has no visible text"),
    ("empty_batch", 422, "a batch without tickets"),
    ("invalid_k", 422, "k outside the allowed range"),
    ("invalid_min_confidence", 422, "min_confidence outside [0, 1]"),
    ("invalid_filter", 422, "a filter on a field the collection does not have"),
    ("invalid_collection_name", 400, "a collection name the store cannot hold"),
    ("invalid_import", 422, "examples that cannot be stored"),
    ("no_examples", 422, "a request without examples"),
    ("no_valid_examples", 422, "none of the examples could be used"),
    ("unknown_label", 422, "labels not in the taxonomy (the message names the nearest); send new_label: true to add them"),
    ("invalid_limit", 422, "a page size outside the allowed range"),
    ("invalid_cursor", 422, "a cursor that is not the next_cursor of a page"),
    ("no_prediction", 422, "accept on a review item without a predicted category (correct it instead)"),
    ("missing_label", 422, "correct without a label"),
    ("no_ticket_text", 422, "no text at the webhook's configured fields"),
    ("cannot_calibrate", 422, "the collection cannot be fitted (too few examples)"),
    ("cannot_examine", 422, "the collection cannot be examined (no examples)"),
    ("model_mismatch", 409, "the collection was embedded with another model"),
    ("busy", 429, "the server is at its maximum of requests in flight (Retry-After)"),
    ("write_rate_limited", 429, "this API key's example writes per minute are used up (Retry-After)"),
    ("too_many_connections", 429, "the client's address holds --max-connections-per-client connections (503: the server holds --max-connections); only probes are answered (Retry-After)"),
    ("bad_request", 400, "a request the HTTP layer rejected"),
    ("forbidden", 403, "refused by the HTTP layer"),
    ("request_timeout", 408, "the request did not arrive in time"),
    ("length_required", 411, "a body without Content-Length where one is needed"),
    ("uri_too_long", 414, "the URI is too long"),
    ("headers_too_large", 431, "the request headers are too large"),
    ("client_error", 400, "another client error of the HTTP layer"),
    ("internal", 500, "an unexpected error; the log has the detail"),
    ("store_corrupt", 500, "the store's files are damaged"),
    ("store_unavailable", 503, "the store cannot be reached"),
    ("state_unavailable", 503, "the helpdesk ledger cannot be reached"),
];

/// Adds the codes to the OpenAPI document: `ErrorDetail.code` becomes an enum and
/// its description lists each code with its status and meaning.
pub struct ErrorCodes;

impl utoipa::Modify for ErrorCodes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        use utoipa::openapi::RefOr;
        let Some(components) = doc.components.as_mut() else { return };
        let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail") else { return };
        let listing: Vec<String> = ERROR_CODES.iter().map(|(c, s, m)| format!("`{c}` ({s}): {m}")).collect();
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!("Stable machine-readable code, one of: {}.", listing.join("; "))))
            .enum_values(Some(ERROR_CODES.iter().map(|(c, _, _)| *c)))
            .build();
        detail.properties.insert("code".into(), RefOr::T(Schema::Object(code)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the serve sources construct: the first string literal on a line
    /// that builds an `ApiError` (or on the next two lines when the call wraps), and the
    /// status fallbacks of `protect.rs`.
    fn constructed_codes() -> Vec<String> {
        let sources = [
            include_str!("api.rs"),
            include_str!("error.rs"),
            include_str!("webhook.rs"),
            include_str!("refit.rs"),
            include_str!("protect.rs"),
            include_str!("listen.rs"),
            include_str!("probes.rs"),
            include_str!("mod.rs"),
        ];
        let markers = ["ApiError::new(", "ApiError::unprocessable(", "ApiError::not_found(", "Self::new(", "Self::unprocessable(", "Self::not_found("];
        let mut codes = Vec::new();
        for src in sources {
            let lines: Vec<&str> = src.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let Some(at) = markers.iter().filter_map(|m| line.find(m).map(|p| p + m.len())).min() else { continue };
                let next: Vec<&str> = lines.iter().skip(i + 1).take(2).copied().collect();
                let rest = format!("{} {}", &line[at..], next.join(" "));
                let literal = rest.split('"').nth(1).unwrap_or("");
                if !literal.is_empty() && literal.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    codes.push(literal.to_string());
                }
            }
        }
        let fallback = include_str!("protect.rs");
        for line in fallback.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit() || c == '_') && l.contains("=> \"")) {
            codes.extend(line.split('"').nth(1).map(str::to_string));
        }
        codes
    }

    #[test]
    fn every_constructed_code_is_listed() {
        let codes = constructed_codes();
        assert!(codes.len() >= 20, "the scan found only {codes:?}");
        for c in codes {
            assert!(ERROR_CODES.iter().any(|(k, _, _)| *k == c), "error code {c:?} is not in ERROR_CODES");
        }
    }
}
