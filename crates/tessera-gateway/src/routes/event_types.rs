//! Event type schemas: `PUT|GET|DELETE /v1/event-types/{type}` and the list
//! `GET /v1/event-types`. A schema describes the events' `properties`;
//! `POST /v1/events` refuses a batch with an event that does not match.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::event_type::{EventType, PutEventType, validate_event_type};
use tessera_core::role::Operation;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Set (or replace) an event type's schema.
#[utoipa::path(put, path = "/v1/event-types/{type}", tag = "events", request_body = PutEventType,
    params(("type" = String, Path, description = "the event type")),
    responses((status = 200, body = EventType), (status = 400, body = ErrorBody)))]
pub async fn put(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PutEventType>,
) -> Result<Json<EventType>, ApiError> {
    let ctx = auth.tenant(Operation::EventsAdmin)?;
    validate_event_type(&name)?;
    if !body.schema.is_object() {
        return Err(ApiError::invalid("schema", "schema must be a JSON Schema object"));
    }
    tessera_serving::event_schemas::compile(&body.schema)
        .map_err(|m| ApiError::invalid("schema", m))?;
    Ok(Json(s.store().put_event_type(&ctx, &name, &body.schema, &auth.actor()).await?))
}

/// An event type's schema.
#[utoipa::path(get, path = "/v1/event-types/{type}", tag = "events",
    params(("type" = String, Path, description = "the event type")),
    responses((status = 200, body = EventType), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<EventType>, ApiError> {
    let ctx = auth.tenant(Operation::EventsRead)?;
    Ok(Json(s.store().get_event_type(&ctx, &name).await?))
}

/// The caller's event types with schemas.
#[utoipa::path(get, path = "/v1/event-types", tag = "events", responses((status = 200, body = List<EventType>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<EventType>>, ApiError> {
    let ctx = auth.tenant(Operation::EventsRead)?;
    Ok(Json(List::of(s.store().list_event_types(&ctx).await?)))
}

/// Remove an event type's schema (its events are accepted unchecked again).
#[utoipa::path(delete, path = "/v1/event-types/{type}", tag = "events",
    params(("type" = String, Path, description = "the event type")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ctx = auth.tenant(Operation::EventsAdmin)?;
    s.store().delete_event_type(&ctx, &name, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
