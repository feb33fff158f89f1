//! Usage metering (G7): what one request used and cost, the price table it
//! is priced by, and the grouped totals tenants and the platform read.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::TenantId;

/// One request's usage. Cost is in micro-dollars (an integer, so sums are exact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    /// Made by the server: a record is stored once even if written twice.
    pub id: String,
    /// The request's id (`x-request-id`).
    pub request_id: String,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// The key (or `jwt:<subject>`) that made the request.
    pub key_id: String,
    pub model: String,
    pub version: String,
    /// `tenant`, `segment` or `platform`.
    pub tier: String,
    pub route: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Time in the model or upstream, in microseconds.
    pub compute_us: i64,
    /// `hit`, `miss`, `bypass` or `stale`.
    pub cache: String,
    pub status: i32,
    pub cost_micros: i64,
    /// The answer's `x-tessera-prediction-id`; empty for a refused request.
    #[serde(default)]
    pub prediction_id: String,
}

/// Prices of one model, for one plan (`*`: any plan), in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub model: String,
    /// A plan name, or `*` for every plan without a price of its own.
    #[serde(default = "any_plan")]
    #[schema(pattern = "^([A-Za-z0-9][A-Za-z0-9._-]{0,63}|\\*)$")]
    pub plan: String,
    #[serde(default)]
    pub prompt_per_1k_usd: f64,
    #[serde(default)]
    pub completion_per_1k_usd: f64,
    #[serde(default)]
    pub per_request_usd: f64,
}

fn any_plan() -> String {
    "*".into()
}

impl Price {
    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::ids::validate_name("model", &self.model)?;
        if self.plan != "*" {
            crate::ids::validate_name("plan", &self.plan)?;
        }
        for (name, v) in [
            ("prompt_per_1k_usd", self.prompt_per_1k_usd),
            ("completion_per_1k_usd", self.completion_per_1k_usd),
            ("per_request_usd", self.per_request_usd),
        ] {
            if !(v.is_finite() && (0.0..=1_000.0).contains(&v)) {
                return Err(ValidationError::new(name, format!("{name} must be 0-1000, got {v}")));
            }
        }
        Ok(())
    }

    /// The cost of one request in micro-dollars.
    pub fn cost_micros(&self, prompt: u64, completion: u64) -> i64 {
        let usd = self.per_request_usd
            + self.prompt_per_1k_usd * prompt as f64 / 1000.0
            + self.completion_per_1k_usd * completion as f64 / 1000.0;
        (usd * 1e6).round() as i64
    }
}

/// How usage totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Day,
    Key,
    Tenant,
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageGroup {
    /// The model, the day (`YYYY-MM-DD`), the key or the tenant.
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_hits: i64,
    pub errors: i64,
    pub cost_usd: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_in_micros_and_validated() {
        let p = Price {
            model: "m".into(),
            plan: "*".into(),
            prompt_per_1k_usd: 0.5,
            completion_per_1k_usd: 1.5,
            per_request_usd: 0.0001,
        };
        assert_eq!(p.cost_micros(1000, 2000), 100 + 500_000 + 3_000_000);
        assert!(Price { prompt_per_1k_usd: -1.0, ..p.clone() }.validate().is_err());
        assert!(Price { completion_per_1k_usd: f64::NAN, ..p.clone() }.validate().is_err());
        assert!(p.validate().is_ok());
    }
}
