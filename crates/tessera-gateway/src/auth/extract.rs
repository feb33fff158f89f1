//! The authentication middleware and the [`Authed`] extractor handlers use.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tessera_core::audit::AuditActor;
use tessera_core::auth::{AuthError, Principal, SystemCtx, TenantCtx};
use tessera_core::role::Operation;

use crate::error::{ApiError, Envelope};
use crate::request::{RequestId, RouteSlot};
use crate::state::AppState;

/// Routes answered without credentials; every other route requires them.
pub const OPEN_ROUTES: &[&str] =
    &["/healthz", "/readyz", "/metrics", "/openapi.json", "/v2/health/live", "/v2/health/ready"];

/// Route-level middleware: records the matched route template for metrics,
/// lets open routes through and authenticates everything else.
pub async fn authenticate_request(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    if let (Some(slot), Some(r)) = (req.extensions().get::<RouteSlot>(), &route) {
        slot.set(r);
    }
    if route.as_deref().is_none_or(|r| OPEN_ROUTES.contains(&r)) {
        return next.run(req).await;
    }
    let envelope = Envelope::of_path(req.uri().path());
    let Some(bearer) = bearer_token(&req) else {
        return ApiError::from(AuthError::Missing).respond(envelope);
    };
    match state.auth().authenticate(bearer).await {
        // The operator's API is closed to tenant keys before any body is read.
        Ok(principal)
            if route.as_deref().is_some_and(|r| r.starts_with("/admin/"))
                && principal.system_ctx().is_none() =>
        {
            ApiError::Forbidden(format!(
                "the /admin API needs a platform key; this key has role {}",
                principal.role()
            ))
            .respond(envelope)
        }
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.respond(envelope),
    }
}

fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The authenticated caller of a request, with the request id for auditing.
#[derive(Clone)]
pub struct Authed {
    pub principal: Principal,
    pub request_id: String,
}

impl Authed {
    /// Who to record in the audit log.
    pub fn actor(&self) -> AuditActor {
        AuditActor {
            key_id: Some(self.principal.actor().to_owned()),
            request_id: Some(self.request_id.clone()),
        }
    }

    /// Authorizes `op` and returns the caller's own tenant context.
    pub fn tenant(&self, op: Operation) -> Result<TenantCtx, ApiError> {
        self.principal.authorize(op)?;
        self.principal.tenant_ctx().ok_or_else(|| {
            ApiError::Forbidden(
                "this key belongs to the platform, not a tenant; use the /admin/v1 routes".into(),
            )
        })
    }

    /// Authorizes platform administration.
    pub fn system(&self) -> Result<SystemCtx, ApiError> {
        self.principal.authorize(Operation::PlatformAdmin)?;
        self.principal.system_ctx().ok_or_else(|| {
            ApiError::Forbidden("platform administration requires a platform key".into())
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(ApiError::Unauthenticated(AuthError::Missing))?;
        let request_id =
            parts.extensions.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        Ok(Authed { principal, request_id })
    }
}
