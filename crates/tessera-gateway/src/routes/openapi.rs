//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi};

use super::{
    alerts, audit, breakers, cache, chat, datasets, deployments, drift, embeddings, event_types,
    events, features, feedback, governance, health, keys, kserve, me, models, oip, plans, rollouts,
    tenants, training_jobs, usage,
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
        events::ingest, events::read, events::stream,
        event_types::list, event_types::put, event_types::get, event_types::delete,
        datasets::upload, datasets::list, datasets::get, datasets::preview, datasets::from_features, datasets::edit_schema,
        feedback::submit, feedback::model_quality, feedback::to_dataset,
        drift::model_drift, drift::view_drift,
        alerts::create, alerts::list, alerts::get, alerts::delete,
        alerts::admin_create, alerts::admin_list, alerts::admin_get, alerts::admin_delete,
        rollouts::create, rollouts::list, rollouts::get, rollouts::pause, rollouts::resume, rollouts::abort,
        training_jobs::create, training_jobs::list, training_jobs::get, training_jobs::cancel, training_jobs::events, training_jobs::lineage,
        governance::report, governance::validate, governance::gate_override,
        governance::list_aliases, governance::put_alias, governance::delete_alias,
        features::list, features::put, features::get, features::delete,
        features::online, features::feast_online, features::push, features::feast_write, features::historical,
        usage::tenant_totals, usage::tenant_records, usage::admin_totals, usage::admin_records,
        usage::list_prices, usage::put_price, usage::delete_price,
        oip::server_metadata, oip::model_metadata, oip::version_metadata, oip::model_ready, oip::version_ready,
        oip::model_infer, oip::version_infer, oip::repository_index, oip::repository_load, oip::repository_unload,
        kserve::kserve_predict,
        models::tenant_create, models::tenant_list, models::tenant_get, models::tenant_upload, models::tenant_versions,
        models::admin_create, models::admin_list, models::admin_upload, models::admin_versions,
    ),
    components(schemas(tessera_core::usage::GroupBy, tessera_core::features::EntitySpec, tessera_core::features::ViewSpec, tessera_core::features::ServiceSpec, crate::error::ErrorBody, crate::error::OipErrorBody)),
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
        // A list of embedding inputs holds 1-2048 texts (utoipa's derive
        // cannot say so on an untagged variant).
        if let Some(RefOr::T(Schema::OneOf(one))) = components.schemas.get_mut("EmbeddingInput") {
            for item in &mut one.items {
                if let RefOr::T(Schema::Array(a)) = item {
                    a.min_items = Some(1);
                    a.max_items = Some(tessera_serving::inference::MAX_INPUTS);
                }
            }
        }
        add_links(&mut doc.paths);
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = crate::auth::OPEN_ROUTES.contains(&path.as_str());
            let ops = [
                (&mut item.get, Method::Get),
                (&mut item.post, Method::Post),
                (&mut item.put, Method::Put),
                (&mut item.patch, Method::Patch),
                (&mut item.delete, Method::Delete),
            ];
            for (op, method) in ops {
                let Some(op) = op.as_mut() else { continue };
                // Handler names repeat across resources; ids must not.
                op.operation_id = Some(operation_id(method, path));
                if open {
                    // Open routes take no credential: an empty list
                    // overrides the document's default.
                    op.security = Some(Vec::new());
                } else {
                    add_error_statuses(path, method, op);
                }
            }
        }
    }
}

/// Links from one creating operation: its path and method, its success
/// status, the id's field in its answer, and each operation that uses the
/// id (path, method, the path parameter it fills).
struct Links {
    from: &'static str,
    method: Method,
    status: &'static str,
    field: &'static str,
    to: &'static [(&'static str, Method, &'static str)],
}

/// Links from the operations that create a resource to those that take its
/// id, so clients (and fuzzers) can follow them: (creating path and method,
/// its success status, the id's field in the answer, then each operation
/// that uses it and its path parameter).
const LINKS: &[Links] = &[
    Links {
        from: "/admin/v1/tenants",
        method: Method::Post,
        status: "201",
        field: "id",
        to: &[
            ("/admin/v1/tenants/{id}", Method::Get, "id"),
            ("/admin/v1/tenants/{id}", Method::Patch, "id"),
            ("/admin/v1/tenants/{id}", Method::Delete, "id"),
            ("/admin/v1/tenants/{id}/keys", Method::Post, "id"),
            ("/admin/v1/tenants/{id}/keys", Method::Get, "id"),
        ],
    },
    Links {
        from: "/admin/v1/tenants/{id}/keys",
        method: Method::Post,
        status: "201",
        field: "id",
        to: &[("/admin/v1/tenants/{id}/keys/{key_id}", Method::Delete, "key_id")],
    },
    Links {
        from: "/admin/v1/keys",
        method: Method::Post,
        status: "201",
        field: "id",
        to: &[("/admin/v1/keys/{key_id}", Method::Delete, "key_id")],
    },
    Links {
        from: "/v1/keys",
        method: Method::Post,
        status: "201",
        field: "id",
        to: &[("/v1/keys/{id}", Method::Delete, "id")],
    },
    Links {
        from: "/admin/v1/plans",
        method: Method::Post,
        status: "201",
        field: "name",
        to: &[
            ("/admin/v1/plans/{name}", Method::Get, "name"),
            ("/admin/v1/plans/{name}", Method::Patch, "name"),
        ],
    },
    Links {
        from: "/v1/models",
        method: Method::Post,
        status: "201",
        field: "name",
        to: &[
            ("/v1/models/{name}", Method::Get, "name"),
            ("/v1/models/{name}/versions", Method::Post, "name"),
            ("/v1/models/{name}/versions", Method::Get, "name"),
            ("/v1/deployments/{name}", Method::Put, "name"),
            ("/v1/deployments/{name}", Method::Get, "name"),
            ("/v2/models/{name}", Method::Get, "name"),
            ("/v2/models/{name}/infer", Method::Post, "name"),
        ],
    },
    Links {
        from: "/admin/v1/models",
        method: Method::Post,
        status: "201",
        field: "id",
        to: &[
            ("/admin/v1/models/{id}/versions", Method::Post, "id"),
            ("/admin/v1/models/{id}/versions", Method::Get, "id"),
            ("/admin/v1/deployments/{id}", Method::Put, "id"),
            ("/admin/v1/deployments/{id}", Method::Get, "id"),
        ],
    },
    Links {
        from: "/admin/v1/prices",
        method: Method::Put,
        status: "200",
        field: "model",
        to: &[("/admin/v1/prices/{model}", Method::Delete, "model")],
    },
];

fn add_links(paths: &mut utoipa::openapi::Paths) {
    use utoipa::openapi::link::LinkBuilder;
    for Links { from, method, status, field, to: targets } in LINKS {
        let Some(op) = paths.paths.get_mut(*from).and_then(|item| operation(item, *method)) else {
            continue;
        };
        let Some(RefOr::T(response)) = op.responses.responses.get_mut(*status) else { continue };
        for (to, to_method, param) in *targets {
            let pointer = to.replace('/', "~1");
            let mut link = LinkBuilder::new()
                .operation_ref(format!("#/paths/{pointer}/{}", to_method.as_str()))
                .parameter(*param, format!("$response.body#/{field}"));
            // The target's other path parameters come from this request's path.
            for other in to.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                if other != *param && from.contains(&format!("{{{other}}}")) {
                    link = link.parameter(other, format!("$request.path.{other}"));
                }
            }
            let link = link.build();
            let name = format!("{}{}", to_method.as_str(), to.replace(['/', '{', '}'], "_"));
            response.links.insert(name, link.into());
        }
    }
}

fn operation(
    item: &mut utoipa::openapi::PathItem,
    method: Method,
) -> Option<&mut utoipa::openapi::path::Operation> {
    match method {
        Method::Get => item.get.as_mut(),
        Method::Post => item.post.as_mut(),
        Method::Put => item.put.as_mut(),
        Method::Patch => item.patch.as_mut(),
        Method::Delete => item.delete.as_mut(),
    }
}

/// A unique operation id from the method and path: `get /admin/v1/tenants/{id}`
/// is `get_admin_v1_tenants_id`.
fn operation_id(method: Method, path: &str) -> String {
    let verb = method.as_str();
    let words: Vec<String> = path
        .split(['/', ':'])
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(['{', '}']).replace(['-', '.'], "_"))
        .collect();
    if words.is_empty() { verb.to_owned() } else { format!("{verb}_{}", words.join("_")) }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// Lists the error statuses an authenticated operation can answer, from
/// what it takes: every one can refuse the credential (401, 403) or find a
/// dependency down (503); parameters and bodies can be invalid (400); a path
/// names something that may not exist (404); a body can be too large (413)
/// or not JSON (415); writes can conflict (409); inference meets limits and
/// budgets (402, 429) and remote providers (502, 504). `/v2` routes answer
/// errors in the Open Inference Protocol's string form.
fn add_error_statuses(path: &str, method: Method, op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let json_body =
        op.request_body.as_ref().is_some_and(|b| b.content.contains_key("application/json"));
    // KServe's `:predict` shares `/v1/models/{name}` with the registry's GET.
    let predict = path == "/v1/models/{name}" && method == Method::Post;
    let inference = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "inference"))
        || path.ends_with("/infer")
        || predict;
    let mut statuses = vec![401, 403, 503];
    if has_params || op.request_body.is_some() {
        statuses.push(400);
    }
    if path.contains('{') {
        statuses.push(404);
    }
    if op.request_body.is_some() || predict || path.ends_with("/infer") {
        statuses.push(413);
    }
    if json_body {
        statuses.push(415);
    }
    if matches!(method, Method::Post | Method::Put | Method::Patch) && !inference {
        statuses.push(409);
    }
    if inference {
        statuses.extend([402, 429, 502, 504]);
    }
    let schema = if path.starts_with("/v2") { "OipErrorBody" } else { "ErrorBody" };
    for status in statuses {
        let key = status.to_string();
        if op.responses.responses.contains_key(&key) {
            continue;
        }
        let description = match status {
            400 => "invalid request",
            401 => "missing or invalid credential",
            402 => "monthly budget used up",
            403 => "not allowed for this key",
            404 => "not found (or another tenant's)",
            409 => "conflicts with what exists",
            413 => "body too large",
            415 => "body is not JSON",
            429 => "over a rate limit, or overloaded; see retry-after",
            502 => "the upstream failed",
            503 => "a dependency or the model is unavailable; see retry-after",
            504 => "the upstream timed out",
            _ => "error",
        };
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build();
        op.responses.responses.insert(key, response.into());
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(document())
}

/// The OpenAPI document as JSON. utoipa writes a link's `operationRef` as
/// `operation_ref`; it is renamed here, where the document is made.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let responses = paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses")?.as_object_mut())
            .flat_map(|r| r.values_mut());
        for response in responses {
            let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
                continue;
            };
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                if let Some(r) = link.remove("operation_ref") {
                    link.insert("operationRef".into(), r);
                }
            }
        }
    }
    doc
}
