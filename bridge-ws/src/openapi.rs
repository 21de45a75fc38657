//! The OpenAPI 3 document of the REST API, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::rest::ResponseEnvelopes;
use crate::{ops, rest};

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
        rest::realtime::presence,
        rest::realtime::group_online,
        rest::realtime::receipts,
        rest::realtime::readers,
        rest::realtime::recall,
        rest::realtime::edit,
        rest::social::friends,
        rest::social::contact_requests,
        rest::social::send_contact_request,
        rest::social::accept_contact_request,
        rest::social::reject_contact_request,
        rest::social::cancel_contact_request,
        rest::social::delete_friend,
        rest::social::contact_settings,
        rest::social::set_contact_settings,
        rest::social::blocks,
        rest::social::block,
        rest::social::unblock,
        rest::social::devices,
        rest::social::logout_device,
        rest::social::logout_all,
        rest::social::admin_users,
        rest::social::admin_user,
        rest::social::admin_disable_user,
        rest::social::admin_enable_user,
        rest::social::admin_reset_password,
        rest::social::admin_set_role,
        rest::social::admin_groups,
        rest::social::admin_dissolve_group,
        rest::social::admin_stats,
        rest::files::upload,
        rest::files::download,
        rest::files::thumbnail,
        rest::files::info,
        rest::health,
        ops::ready,
        ops::metrics,
        serve,
    ),
    modifiers(&BearerAuth, &ResponseEnvelopes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let routes: Vec<_> = rest::ROUTES.iter().chain(ops::ROUTES).collect();
        for (method, path) in &routes {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is documented"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, routes.len(), "no undocumented or stale paths");
    }
}
