//! `GET /admin/v1/breakers`: every backend's circuit breaker on this replica.

use axum::Json;
use axum::extract::State;

use super::List;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use tessera_core::breaker::BreakerView;

/// Circuit breakers of this replica, by backend.
#[utoipa::path(get, path = "/admin/v1/breakers", tag = "operations", responses((status = 200, body = List<BreakerView>)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<BreakerView>>, ApiError> {
    auth.system()?;
    Ok(Json(List::of(s.breakers().views())))
}
