//! Tessera's HTTP gateway: the axum app with authentication, tenant context,
//! the admin and tenant routes, metrics and the OpenAPI document.
//!
//! Request path: `request_layer` (request id, span, metrics, access log) ->
//! route match -> `authenticate_request` (open routes pass; others need a key
//! or token) -> handler (authorize, call a plain domain function) -> answer or
//! `ApiError` in the envelope.

pub mod auth;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod request;
pub mod routes;
pub mod state;
mod strict;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;

pub use auth::Authenticator;
pub use error::ApiError;
pub use state::{AppState, GatewayConfig};

/// Builds the whole HTTP app.
pub fn app(state: AppState) -> Router {
    routes::api_routes()
        .into_router()
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate_request))
        .fallback(routes::fallback)
        .layer(from_fn_with_state(state.clone(), request::request_layer))
        .layer(DefaultBodyLimit::max(state.max_body_bytes()))
        .with_state(state)
}
