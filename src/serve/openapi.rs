//! The OpenAPI document, generated from the handlers' annotations (so it cannot drift
//! from the code): every route of every handler module, the bearer scheme, the error codes.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::error_codes::ErrorCodes;

#[derive(OpenApi)]
#[openapi(
    info(title = "ticket-triage", description = "Classify support tickets into your own taxonomy with retrieved few-shot examples."),
    paths(super::api::classify, super::api::classify_batch, super::examples::add_examples, super::examples::delete_example, super::examples::delete_by_source, super::api::list_collections, super::api::collection_info, super::refit::calibrate_now, super::doctor::doctor, super::webhook::ticket_webhook, super::review::list, super::review::summary, super::review::resolve, super::probes::healthz, super::probes::readyz, super::api::metrics),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth, &ErrorCodes)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}


/// `GET /openapi.json`.
pub async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for p in ["/v1/classify", "/v1/classify/batch", "/v1/examples", "/v1/examples/{id}", "/v1/collections",
            "/v1/collections/{name}", "/v1/collections/{name}/doctor", "/v1/webhooks/ticket", "/v1/review", "/v1/review/summary", "/v1/review/{id}", "/healthz", "/readyz", "/metrics"]
        {
            assert!(doc["paths"][p].is_object(), "missing {p}");
        }
        assert!(doc["components"]["schemas"]["TicketResult"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        // `collection` is an optional query parameter wherever it is taken.
        for (p, m) in [("/v1/examples/{id}", "delete"), ("/v1/webhooks/ticket", "post")] {
            let params = doc["paths"][p][m]["parameters"].as_array().unwrap();
            let c = params.iter().find(|x| x["name"] == "collection").unwrap();
            assert_eq!((c["in"].as_str(), c["required"].as_bool()), (Some("query"), Some(false)), "{p}");
        }
        let codes = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().map(Vec::len), Some(super::super::error_codes::ERROR_CODES.len()));
    }
}
