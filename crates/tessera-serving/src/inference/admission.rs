//! Admission: the limits that apply to one inference request, checked and
//! consumed together (see `limits.rs`): its key's own (`scopes.rpm`,
//! `scopes.tpm`), its tenant's plan (`rpm`, `tpm`, `concurrency`), the
//! requested model's deployment (`rpm`, `tpm`) and the monthly budget.

use tessera_core::auth::AuthMethod;

use super::ServeError;
use super::resolve::{Caller, Resolution};
use crate::Services;
use crate::limits::{Admitted, Check, Dim};

/// Budget share past which the tenant is alerted (the soft threshold).
pub const BUDGET_SOFT: f64 = 0.8;

/// Admits a request to the resolved model `name` that is estimated to use
/// `prompt` and `completion` tokens (zeros when the route does not count
/// tokens), or refuses it: over a rate limit, or over the monthly budget.
pub async fn admit(
    s: &Services,
    caller: &Caller,
    res: &Resolution,
    name: &str,
    (prompt, completion): (u64, u64),
) -> Result<Admitted, ServeError> {
    let tokens = prompt.saturating_add(completion);
    let mut checks = Vec::new();
    let mut add = |owner: &'static str, id: &str, dim: Dim, limit: Option<u64>, cost: u64| {
        if let Some(limit) = limit
            && (cost > 0 || dim == Dim::Requests)
        {
            checks.push(Check { owner, id: id.to_owned(), dim, limit, cost });
        }
    };
    if caller.principal.method() == AuthMethod::ApiKey {
        let scopes = caller.principal.scopes();
        let key = caller.principal.actor();
        add("key", key, Dim::Requests, scopes.rpm, 1);
        add("key", key, Dim::Tokens, scopes.tpm, tokens);
    }
    let tenant = caller.ctx.tenant_id().as_str();
    let plan = &res.tenant.plan;
    add("tenant", tenant, Dim::Requests, plan.rpm, 1);
    add("tenant", tenant, Dim::Tokens, plan.tpm, tokens);
    add("tenant", tenant, Dim::Concurrency, plan.concurrency, 1);
    if let Some(d) = &res.deployment {
        let id = &res.model().id;
        add("model", id, Dim::Requests, d.rpm, 1);
        add("model", id, Dim::Tokens, d.tpm, tokens);
    }
    // The monthly budget: this request's estimated cost is reserved, and
    // settled to the real cost afterwards.
    let price = s.meter().price(name, &plan.name).await;
    if let Some(budget) = plan.monthly_budget_usd {
        let sys = tessera_core::auth::SystemCtx::bootstrap();
        let since = tessera_core::time::Timestamp::now().month_start().millis();
        let store = s.store();
        let tid = caller.ctx.tenant_id().clone();
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
        Dim::Spend => ServeError::BudgetExceeded {
            message: format!(
                "tenant has used its monthly budget of ${:.2}; it renews at the start of next month (UTC)",
                plan.monthly_budget_usd.unwrap_or(0.0)
            ),
            retry_after_secs: d.retry_after_secs,
        },
        _ => ServeError::RateLimited {
            message: d.message,
            retry_after_secs: d.retry_after_secs,
            headers: d
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
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

/// Admits `events` events for the caller's tenant against its plan's
/// `events_per_minute` (through Redis across replicas when configured).
pub async fn admit_events(
    s: &Services,
    ctx: &tessera_core::auth::TenantCtx,
    events: u64,
) -> Result<(), ServeError> {
    let info = s.tenants().get(s.store(), ctx).await?;
    let Some(limit) = info.plan.events_per_minute else { return Ok(()) };
    let check = Check {
        owner: "tenant",
        id: ctx.tenant_id().as_str().to_owned(),
        dim: Dim::Events,
        limit,
        cost: events,
    };
    s.limiter().admit(vec![check]).await.map(drop).map_err(|d| ServeError::RateLimited {
        message: d.message,
        retry_after_secs: d.retry_after_secs,
        headers: d
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
    })
}

/// A rough token count for text, before the model has counted: about four
/// characters a token, at least one per piece of text.
pub fn estimate_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts.into_iter().map(|t| (t.len() as u64).div_ceil(4).max(1)).sum()
}
