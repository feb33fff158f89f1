//! The route table. Every route is added through [`ApiRoutes::add`], which
//! also records it, so a test can check that each one is described in the
//! OpenAPI document (`openapi::ApiDoc`).

pub mod alerts;
pub mod audit;
pub mod breakers;
pub mod cache;
pub mod chat;
mod chat_sse;
pub mod datasets;
pub mod deployments;
pub mod drift;
pub mod embeddings;
pub mod event_types;
pub mod events;
pub mod features;
pub mod feedback;
pub mod governance;
pub mod health;
mod inference;
pub mod keys;
pub mod kserve;
pub mod me;
pub mod models;
pub mod oip;
mod oip_tensors;
pub mod openapi;
pub mod plans;
pub mod rollouts;
pub mod tenants;
pub mod training_jobs;
pub mod usage;

use axum::Router;
use axum::handler::Handler;
use axum::http::{Method, Uri};
use axum::routing::{MethodFilter, on};

use crate::error::ApiError;
use crate::state::AppState;

/// HTTP verbs the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Put,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Patch => "patch",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// A router that remembers what it routes.
pub struct ApiRoutes {
    router: Router<AppState>,
    registered: Vec<(Verb, &'static str)>,
}

impl ApiRoutes {
    fn new() -> Self {
        Self { router: Router::new(), registered: Vec::new() }
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        mut self,
        verb: Verb,
        path: &'static str,
        handler: H,
    ) -> Self {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.registered.push((verb, path));
        self
    }

    /// Every `(verb, path template)` routed.
    pub fn registered(&self) -> &[(Verb, &'static str)] {
        &self.registered
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// All routes of the API.
pub fn api_routes() -> ApiRoutes {
    use Verb::*;
    ApiRoutes::new()
        .add(Get, "/healthz", health::healthz)
        .add(Get, "/readyz", health::readyz)
        .add(Get, "/v2/health/live", health::oip_live)
        .add(Get, "/v2/health/ready", health::oip_ready)
        .add(Get, "/metrics", health::metrics)
        .add(Get, "/openapi.json", openapi::openapi_json)
        .add(Post, "/admin/v1/tenants", tenants::create)
        .add(Get, "/admin/v1/tenants", tenants::list)
        .add(Get, "/admin/v1/tenants/{id}", tenants::get)
        .add(Patch, "/admin/v1/tenants/{id}", tenants::update)
        .add(Delete, "/admin/v1/tenants/{id}", tenants::delete)
        .add(Post, "/admin/v1/plans", plans::create)
        .add(Get, "/admin/v1/plans", plans::list)
        .add(Get, "/admin/v1/plans/{name}", plans::get)
        .add(Patch, "/admin/v1/plans/{name}", plans::update)
        .add(Post, "/admin/v1/tenants/{id}/keys", keys::admin_create)
        .add(Get, "/admin/v1/tenants/{id}/keys", keys::admin_list)
        .add(Delete, "/admin/v1/tenants/{id}/keys/{key_id}", keys::admin_revoke)
        .add(Post, "/admin/v1/keys", keys::platform_create)
        .add(Get, "/admin/v1/keys", keys::platform_list)
        .add(Delete, "/admin/v1/keys/{key_id}", keys::platform_revoke)
        .add(Get, "/admin/v1/audit", audit::admin_list)
        .add(Get, "/admin/v1/audit/verify", audit::verify)
        .add(Get, "/admin/v1/breakers", breakers::list)
        .add(Put, "/v1/deployments/{name}", deployments::tenant_put)
        .add(Get, "/v1/deployments/{name}", deployments::tenant_get)
        .add(Delete, "/v1/deployments/{name}", deployments::tenant_delete)
        .add(Put, "/admin/v1/deployments/{id}", deployments::admin_put)
        .add(Get, "/admin/v1/deployments/{id}", deployments::admin_get)
        .add(Delete, "/admin/v1/deployments/{id}", deployments::admin_delete)
        .add(Get, "/v1/me", me::me)
        .add(Post, "/v1/keys", keys::tenant_create)
        .add(Get, "/v1/keys", keys::tenant_list)
        .add(Delete, "/v1/keys/{id}", keys::tenant_revoke)
        .add(Get, "/v1/audit", audit::tenant_list)
        .add(Post, "/v1/embeddings", embeddings::create)
        .add(Post, "/v1/chat/completions", chat::create)
        .add(Delete, "/v1/cache", cache::purge)
        .add(Post, "/v1/events", events::ingest)
        .add(Get, "/v1/events", events::read)
        .add(Get, "/v1/events/stream", events::stream)
        .add(Get, "/v1/event-types", event_types::list)
        .add(Put, "/v1/event-types/{type}", event_types::put)
        .add(Get, "/v1/event-types/{type}", event_types::get)
        .add(Delete, "/v1/event-types/{type}", event_types::delete)
        .add(Post, "/v1/training-jobs", training_jobs::create)
        .add(Get, "/v1/training-jobs", training_jobs::list)
        .add(Get, "/v1/training-jobs/{id}", training_jobs::get)
        .add(Post, "/v1/training-jobs/{id}/cancel", training_jobs::cancel)
        .add(Get, "/v1/training-jobs/{id}/events", training_jobs::events)
        .add(Post, "/v1/datasets", datasets::upload)
        .add(Get, "/v1/datasets", datasets::list)
        .add(Get, "/v1/datasets/{id}", datasets::get)
        .add(Get, "/v1/datasets/{id}/preview", datasets::preview)
        .add(Post, "/v1/datasets/from-features", datasets::from_features)
        .add(Post, "/v1/datasets/from-feedback", feedback::to_dataset)
        .add(Post, "/v1/feedback", feedback::submit)
        .add(Post, "/v1/alerts", alerts::create)
        .add(Get, "/v1/alerts", alerts::list)
        .add(Get, "/v1/alerts/{id}", alerts::get)
        .add(Delete, "/v1/alerts/{id}", alerts::delete)
        .add(Post, "/admin/v1/alerts", alerts::admin_create)
        .add(Get, "/admin/v1/alerts", alerts::admin_list)
        .add(Get, "/admin/v1/alerts/{id}", alerts::admin_get)
        .add(Delete, "/admin/v1/alerts/{id}", alerts::admin_delete)
        .add(Post, "/v1/rollouts", rollouts::create)
        .add(Get, "/v1/rollouts", rollouts::list)
        .add(Get, "/v1/rollouts/{id}", rollouts::get)
        .add(Post, "/v1/rollouts/{id}/pause", rollouts::pause)
        .add(Post, "/v1/rollouts/{id}/resume", rollouts::resume)
        .add(Post, "/v1/rollouts/{id}/abort", rollouts::abort)
        .add(Patch, "/v1/datasets/{id}/schema", datasets::edit_schema)
        .add(Post, "/v1/features/online", features::online)
        .add(Post, "/v1/features/get-online-features", features::feast_online)
        .add(Post, "/v1/features/push", features::push)
        .add(Post, "/v1/features/historical", features::historical)
        .add(Post, "/v1/features/write-to-online-store", features::feast_write)
        .add(Get, "/v1/features/{kind}", features::list)
        .add(Put, "/v1/features/{kind}/{name}", features::put)
        .add(Get, "/v1/features/{kind}/{name}", features::get)
        .add(Delete, "/v1/features/{kind}/{name}", features::delete)
        .add(Get, "/v1/usage", usage::tenant_totals)
        .add(Get, "/v1/usage/records", usage::tenant_records)
        .add(Get, "/admin/v1/usage", usage::admin_totals)
        .add(Get, "/admin/v1/usage/records", usage::admin_records)
        .add(Get, "/admin/v1/prices", usage::list_prices)
        .add(Put, "/admin/v1/prices", usage::put_price)
        .add(Delete, "/admin/v1/prices/{model}", usage::delete_price)
        .add(Post, "/v1/models", models::tenant_create)
        .add(Get, "/v1/models", models::tenant_list)
        .add(Get, "/v1/models/{name}", models::tenant_get)
        .add(Post, "/v1/models/{name}/versions", models::tenant_upload)
        .add(Get, "/v1/models/{name}/versions", models::tenant_versions)
        .add(Get, "/v1/models/{name}/versions/{version}/lineage", training_jobs::lineage)
        .add(Get, "/v1/models/{name}/versions/{version}/report", governance::report)
        .add(Post, "/v1/models/{name}/versions/{version}/validate", governance::validate)
        .add(Get, "/v1/models/{name}/quality", feedback::model_quality)
        .add(Get, "/v1/models/{name}/drift", drift::model_drift)
        .add(Get, "/v1/features/views/{name}/drift", drift::view_drift)
        .add(Get, "/v1/models/{name}/aliases", governance::list_aliases)
        .add(Put, "/v1/models/{name}/aliases/{alias}", governance::put_alias)
        .add(Delete, "/v1/models/{name}/aliases/{alias}", governance::delete_alias)
        .add(
            Post,
            "/admin/v1/models/{id}/versions/{version}/gate-override",
            governance::gate_override,
        )
        .add(Post, "/v1/models/{name}", kserve::kserve_predict)
        .add(Get, "/v2", oip::server_metadata)
        .add(Get, "/v2/models/{name}", oip::model_metadata)
        .add(Get, "/v2/models/{name}/versions/{version}", oip::version_metadata)
        .add(Get, "/v2/models/{name}/ready", oip::model_ready)
        .add(Get, "/v2/models/{name}/versions/{version}/ready", oip::version_ready)
        .add(Post, "/v2/models/{name}/infer", oip::model_infer)
        .add(Post, "/v2/models/{name}/versions/{version}/infer", oip::version_infer)
        .add(Post, "/v2/repository/index", oip::repository_index)
        .add(Post, "/v2/repository/models/{name}/load", oip::repository_load)
        .add(Post, "/v2/repository/models/{name}/unload", oip::repository_unload)
        .add(Post, "/admin/v1/models", models::admin_create)
        .add(Get, "/admin/v1/models", models::admin_list)
        .add(Post, "/admin/v1/models/{id}/versions", models::admin_upload)
        .add(Get, "/admin/v1/models/{id}/versions", models::admin_versions)
}

/// Unknown routes answer 404 in the error envelope (the OIP form under `/v2`).
pub async fn fallback(method: Method, uri: Uri) -> axum::response::Response {
    ApiError::RouteNotFound { method: method.to_string(), path: uri.path().to_owned() }
        .respond(crate::error::Envelope::of_path(uri.path()))
}

/// A list answer: `{"object": "list", "data": [...]}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn of(data: Vec<T>) -> Self {
        Self { object: "list", data }
    }
}
