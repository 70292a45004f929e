//! The OpenAPI document, generated from the handlers' annotations (so it cannot drift
//! from the code): every route of every handler module, the bearer scheme, the error codes.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::error_codes::ErrorCodes;

#[derive(OpenApi)]
#[openapi(
    info(title = "ticket-triage", description = "Classify support tickets into your own taxonomy with retrieved few-shot examples."),
    paths(super::api::classify, super::api::classify_batch, super::examples::add_examples, super::examples::delete_example, super::examples::delete_by_source, super::api::list_collections, super::api::collection_info, super::refit::calibrate_now, super::doctor::doctor, super::webhook::ticket_webhook, super::probes::healthz, super::probes::readyz, super::api::metrics),
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
