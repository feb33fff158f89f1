//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    audit, breakers, cache, chat, deployments, embeddings, health, keys, kserve, me, models, oip,
    plans, tenants, usage,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "Multi-tenant AI platform API. Errors use the envelope {\"error\": {\"message\", \"type\", \"code\", \"param\"}}."),
    paths(
        health::healthz, health::readyz, health::oip_live, health::oip_ready, health::metrics, openapi_json,
        tenants::create, tenants::list, tenants::get, tenants::update, tenants::delete,
        plans::create, plans::list, plans::get, plans::update,
        keys::admin_create, keys::admin_list, keys::admin_revoke,
        keys::platform_create, keys::platform_list, keys::platform_revoke,
        keys::tenant_create, keys::tenant_list, keys::tenant_revoke,
        audit::admin_list, audit::verify, audit::tenant_list, breakers::list,
        deployments::tenant_put, deployments::tenant_get, deployments::tenant_delete,
        deployments::admin_put, deployments::admin_get, deployments::admin_delete,
        me::me,
        embeddings::create, chat::create, cache::purge,
        usage::tenant_totals, usage::tenant_records, usage::admin_totals, usage::admin_records,
        usage::list_prices, usage::put_price, usage::delete_price,
        oip::server_metadata, oip::model_metadata, oip::version_metadata, oip::model_ready, oip::version_ready,
        oip::model_infer, oip::version_infer, oip::repository_index, oip::repository_load, oip::repository_unload,
        kserve::kserve_predict,
        models::tenant_create, models::tenant_list, models::tenant_get, models::tenant_upload, models::tenant_versions,
        models::admin_create, models::admin_list, models::admin_upload, models::admin_versions,
    ),
    components(schemas(tessera_core::usage::GroupBy)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Open routes take no credential: an empty list overrides the
        // document's default.
        for path in crate::auth::OPEN_ROUTES {
            if let Some(item) = doc.paths.paths.get_mut(*path) {
                for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.delete]
                    .into_iter()
                    .flatten()
                {
                    op.security = Some(Vec::new());
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
