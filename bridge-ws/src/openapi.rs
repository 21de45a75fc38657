//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::rest;

#[derive(OpenApi)]
#[openapi(
    info(title = "Quip REST API", description = "SimpleIM-compatible: every response is {code, message, data}."),
    paths(
        rest::register,
        rest::login,
        rest::refresh,
        rest::me,
        rest::user_by_username,
        rest::conversations,
        rest::mark_read,
        rest::private_history,
        rest::group_history,
        rest::my_groups,
        rest::create_group,
        rest::get_group,
        rest::join_group,
        rest::leave_group,
        rest::group_members,
        rest::presence,
        rest::group_online,
        rest::receipts,
        rest::readers,
        rest::recall,
        rest::edit,
        rest::health,
        serve,
    ),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[utoipa::path(get, path = "/api/openapi.json", responses((status = 200, description = "this document")))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
