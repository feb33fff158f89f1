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
use crate::metering::{Draft, Tokens};
use crate::state::AppState;

/// Budget share past which the tenant is alerted (the soft threshold).
const BUDGET_SOFT: f64 = 0.8;

/// Admits a request to `model` that is estimated to use `tokens` (prompt,
/// completion; zeros when the route does not count tokens), or refuses it:
/// 429 over a rate limit, 402 `budget_exceeded` over the monthly budget.
pub(super) async fn admit(
    s: &AppState,
    auth: &Authed,
    model: &str,
    (prompt, completion): (u64, u64),
) -> Result<Admitted, ApiError> {
    let tokens = prompt.saturating_add(completion);
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
    // The monthly budget: this request's estimated cost is reserved, and
    // settled to the real cost afterwards.
    let price = s.meter().price(model, &plan.name).await;
    if let Some(budget) = plan.monthly_budget_usd {
        let sys = tessera_core::auth::SystemCtx::bootstrap();
        let since = tessera_core::time::Timestamp::now().month_start().millis();
        let store = s.store();
        let tid = ctx.tenant_id().clone();
        s.limiter()
            .seed_spend(tenant, async move { store.spend_since(&sys, &tid, since).await.ok() })
            .await;
        let estimate =
            price.as_ref().map_or(0, |p| p.cost_micros(prompt, completion).max(0) as u64);
        checks.push(Check {
            owner: "tenant",
            id: tenant.to_owned(),
            dim: Dim::Spend,
            limit: (budget * 1e6).round() as u64,
            // At least one micro-dollar: a tenant at its budget is stopped
            // even by a request that is free to estimate.
            cost: estimate.max(1),
        });
    }
    let mut admitted = s.limiter().admit(checks).await.map_err(|d| match d.dim {
        Dim::Spend => ApiError::BudgetExceeded {
            message: format!(
                "tenant has used its monthly budget of ${:.2}; it renews at the start of next month (UTC)",
                plan.monthly_budget_usd.unwrap_or(0.0)
            ),
            retry_after_secs: d.retry_after_secs,
        },
        _ => ApiError::RateLimited {
            message: d.message,
            retry_after_secs: d.retry_after_secs,
            headers: Box::new(d.headers),
        },
    })?;
    if let Some(used) = admitted.used(Dim::Spend)
        && used >= BUDGET_SOFT
    {
        s.limiter().budget_alert(tenant, used);
    }
    if let Some(p) = price {
        admitted.pricer = Some(Box::new(move |pr, co| p.cost_micros(pr, co).max(0) as u64));
    }
    Ok(admitted)
}

/// A rough token count for text, before the model has counted: about four
/// characters a token, at least one per piece of text.
pub(super) fn estimate_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts.into_iter().map(|t| (t.len() as u64).div_ceil(4).max(1)).sum()
}

/// A usage draft for an inference request, filled in by the handler and
/// recorded by [`finish`] (or, for a stream, when the stream ends).
pub(super) async fn draft(
    s: &AppState,
    auth: &Authed,
    route: &'static str,
    model: &str,
) -> Option<Draft> {
    let ctx = auth.tenant(Operation::Inference).ok()?;
    let plan = s.tenants().get(s.store(), &ctx).await.ok()?.plan.name.clone();
    Some(Draft {
        meter: s.meter().clone(),
        request_id: auth.request_id.clone(),
        tenant_id: ctx.tenant_id().clone(),
        plan,
        key_id: auth.principal.actor().to_owned(),
        route,
        model: model.to_owned(),
        version: String::new(),
        tier: String::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        compute: std::time::Duration::ZERO,
        cache: "bypass",
    })
}

/// Records the draft (if the handler did not hand it to a stream) from the
/// answer: its status, headers (model, tier, version, cache), tokens, and
/// the time spent in the model (total minus the reported overhead).
pub(super) fn finish(
    mut draft: Option<Draft>,
    result: &Result<axum::response::Response, ApiError>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(r) => {
            note_answer(&mut draft, r.headers());
            if let (Some(d), Some(t)) = (&mut draft, r.extensions().get::<Tokens>()) {
                d.prompt_tokens = t.0;
                d.completion_tokens = t.1;
            }
            let overhead = r
                .headers()
                .get("x-tessera-overhead-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if let Some(d) = &mut draft {
                d.compute = started
                    .elapsed()
                    .saturating_sub(std::time::Duration::from_secs_f64(overhead.max(0.0) / 1000.0));
            }
            r.status().as_u16()
        }
        Err(e) => e.status().as_u16(),
    };
    if let Some(d) = draft {
        tokio::spawn(d.finish(status));
    }
}

/// Fills a draft from an answer's headers (model, tier, version, cache).
pub(super) fn note_answer(d: &mut Option<Draft>, h: &axum::http::HeaderMap) {
    let Some(d) = d else { return };
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(m) = get("x-tessera-model") {
        d.model = m;
    }
    if let Some(t) = get("x-tessera-tier") {
        d.tier = t;
    }
    if let Some(v) = get("x-tessera-model-version") {
        d.version = v;
    }
    d.cache = match get("x-tessera-cache").as_deref() {
        Some("hit") => "hit",
        Some("miss") => "miss",
        Some("stale") => "stale",
        _ => "bypass",
    };
}
