//! `DELETE /v1/cache?model=NAME`: forgets the caller's cached answers of one
//! model, on every replica (within a second through Redis).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_core::role::Operation;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PurgeParams {
    /// The model whose cached answers to forget.
    pub model: String,
}

/// Purge the caller's cached answers of a model.
#[utoipa::path(delete, path = "/v1/cache", tag = "inference", params(PurgeParams),
    responses((status = 204, description = "purged"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn purge(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<PurgeParams>,
) -> Result<StatusCode, ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    let caller = super::inference::caller_in(&auth, ctx.clone(), String::new());
    let model =
        tessera_serving::inference::resolve(&s, &caller, &p.model).await?.model.model.clone();
    s.cache().purge(ctx.tenant_id().as_str(), &model.id).await.map_err(|()| {
        ApiError::Unavailable("redis did not take the purge; cached answers remain".into())
    })?;
    Ok(StatusCode::NO_CONTENT)
}
