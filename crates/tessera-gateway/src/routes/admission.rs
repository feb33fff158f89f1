//! The limits that apply to one inference request: its key's own (`scopes.rpm`,
//! `scopes.tpm`), its tenant's plan (`rpm`, `tpm`, `concurrency`) and the
//! requested model's deployment (`rpm`, `tpm`), checked and consumed together
//! (see `limits.rs`).

use tessera_core::auth::AuthMethod;
use tessera_core::role::Operation;
use tessera_store::ModelView;

use super::embeddings::authorize_model;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::limits::{Admitted, Check, Dim};
use crate::state::AppState;

/// Admits a request to `model` that is estimated to use `tokens` (0 when
/// the route does not count tokens), or refuses it with 429.
pub(super) async fn admit(
    s: &AppState,
    auth: &Authed,
    model: &str,
    tokens: u64,
) -> Result<Admitted, ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let info = s.tenants().get(s.store(), &ctx).await?;
    let mut checks = Vec::new();
    let mut add = |owner: &'static str, id: &str, dim: Dim, limit: Option<u64>, cost: u64| {
        if let Some(limit) = limit
            && (cost > 0 || dim == Dim::Requests)
        {
            checks.push(Check { owner, id: id.to_owned(), dim, limit, cost });
        }
    };
    if auth.principal.method() == AuthMethod::ApiKey {
        let scopes = auth.principal.scopes();
        let key = auth.principal.actor();
        add("key", key, Dim::Requests, scopes.rpm, 1);
        add("key", key, Dim::Tokens, scopes.tpm, tokens);
    }
    let tenant = ctx.tenant_id().as_str();
    let plan = &info.plan;
    add("tenant", tenant, Dim::Requests, plan.rpm, 1);
    add("tenant", tenant, Dim::Tokens, plan.tpm, tokens);
    add("tenant", tenant, Dim::Concurrency, plan.concurrency, 1);
    // The model's own limits, from its deployment. A model the caller cannot
    // see fails here as it would in the handler.
    let resolved = authorize_model(s, &ctx, &auth.principal, model).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() };
    if let Some(d) = s.deployment(view, &resolved.model).await? {
        add("model", &resolved.model.id, Dim::Requests, d.rpm, 1);
        add("model", &resolved.model.id, Dim::Tokens, d.tpm, tokens);
    }
    s.limiter().admit(checks).await.map_err(|d| ApiError::RateLimited {
        message: d.message,
        retry_after_secs: d.retry_after_secs,
        headers: Box::new(d.headers),
    })
}

/// A rough token count for text, before the model has counted: about four
/// characters a token, at least one per piece of text.
pub(super) fn estimate_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts.into_iter().map(|t| (t.len() as u64).div_ceil(4).max(1)).sum()
}
