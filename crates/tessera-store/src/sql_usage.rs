//! Usage metering and prices in SQL, shared by the SQLite and PostgreSQL
//! stores: expanded inside `sql_metadata_store!` (which supplies `Tx`,
//! `DbRow`, `append_audit` and the imports), its trait methods delegate here.

macro_rules! sql_usage_store {
    ($store:ty, $db:ty) => {
        impl $store {
            pub(crate) async fn sql_insert_usage(&self, _sys: &SystemCtx, records: &[UsageRecord]) -> Result<u64, StoreError> {
                if records.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.begin(TxScope::System, true).await?;
                let mut inserted = 0;
                // Many rows per statement: one round trip per chunk, not per record.
                for chunk in records.chunks(200) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO usage_records (id, request_id, ts_ms, tenant_id, key_id, model, version, tier, route, \
                         prompt_tokens, completion_tokens, compute_us, cache, status, cost_micros, prediction_id) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id.clone())
                            .push_bind(r.request_id.clone())
                            .push_bind(r.ts_ms)
                            .push_bind(r.tenant_id.as_str().to_owned())
                            .push_bind(r.key_id.clone())
                            .push_bind(r.model.clone())
                            .push_bind(r.version.clone())
                            .push_bind(r.tier.clone())
                            .push_bind(r.route.clone())
                            .push_bind(r.prompt_tokens)
                            .push_bind(r.completion_tokens)
                            .push_bind(r.compute_us)
                            .push_bind(r.cache.clone())
                            .push_bind(r.status)
                            .push_bind(r.cost_micros)
                            .push_bind(r.prediction_id.clone());
                    });
                    qb.push(" ON CONFLICT (id) DO NOTHING");
                    inserted += qb.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(inserted)
            }

            pub(crate) async fn sql_list_usage(
                &self,
                scope: UsageScope<'_>,
                from_ms: i64,
                to_ms: i64,
                limit: u32,
            ) -> Result<Vec<UsageRecord>, StoreError> {
                let (tx_scope, tenant) = usage_scope(&scope);
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT id, request_id, ts_ms, tenant_id, key_id, model, version, tier, route, prompt_tokens, \
                     completion_tokens, compute_us, cache, status, cost_micros, prediction_id FROM usage_records \
                     WHERE ts_ms >= $1 AND ts_ms < $2 {} ORDER BY ts_ms, id LIMIT {}",
                    if tenant.is_some() { "AND tenant_id = $3" } else { "" },
                    limit
                )))
                .bind(from_ms)
                .bind(to_ms)
                .bind(tenant.unwrap_or(""))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        Ok(UsageRecord {
                            id: r.try_get("id")?,
                            request_id: r.try_get("request_id")?,
                            ts_ms: r.try_get("ts_ms")?,
                            tenant_id: TenantId::from_stored(r.try_get("tenant_id")?),
                            key_id: r.try_get("key_id")?,
                            model: r.try_get("model")?,
                            version: r.try_get("version")?,
                            tier: r.try_get("tier")?,
                            route: r.try_get("route")?,
                            prompt_tokens: r.try_get("prompt_tokens")?,
                            completion_tokens: r.try_get("completion_tokens")?,
                            compute_us: r.try_get("compute_us")?,
                            cache: r.try_get("cache")?,
                            status: r.try_get("status")?,
                            cost_micros: r.try_get("cost_micros")?,
                            prediction_id: r.try_get("prediction_id")?,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn sql_usage_totals(
                &self,
                scope: UsageScope<'_>,
                from_ms: i64,
                to_ms: i64,
                group_by: GroupBy,
            ) -> Result<Vec<UsageGroup>, StoreError> {
                let (tx_scope, tenant) = usage_scope(&scope);
                let group = match group_by {
                    GroupBy::Model => "model",
                    GroupBy::Key => "key_id",
                    GroupBy::Tenant => "tenant_id",
                    GroupBy::Day => "CAST(ts_ms / 86400000 AS TEXT)",
                };
                let mut tx = self.begin(tx_scope, false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {group} AS grp, COUNT(*) AS requests, \
                     CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
                     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
                     CAST(COALESCE(SUM(CASE WHEN cache = 'hit' THEN 1 ELSE 0 END), 0) AS BIGINT) AS cache_hits, \
                     CAST(COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
                     CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost_micros \
                     FROM usage_records WHERE ts_ms >= $1 AND ts_ms < $2 {} GROUP BY {group} ORDER BY {group}",
                    if tenant.is_some() { "AND tenant_id = $3" } else { "" },
                )))
                .bind(from_ms)
                .bind(to_ms)
                .bind(tenant.unwrap_or(""))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        let grp: String = r.try_get("grp")?;
                        let grp = match group_by {
                            GroupBy::Day => grp
                                .parse::<i64>()
                                .map(|d| {
                                    let mut s = Timestamp::from_millis(d * 86_400_000).to_rfc3339();
                                    s.truncate(10);
                                    s
                                })
                                .unwrap_or(grp),
                            _ => grp,
                        };
                        let cost: i64 = r.try_get("cost_micros")?;
                        Ok(UsageGroup {
                            group: grp,
                            requests: r.try_get("requests")?,
                            prompt_tokens: r.try_get("prompt_tokens")?,
                            completion_tokens: r.try_get("completion_tokens")?,
                            cache_hits: r.try_get("cache_hits")?,
                            errors: r.try_get("errors")?,
                            cost_usd: cost as f64 / 1e6,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn sql_spend_since(&self, _sys: &SystemCtx, tenant: &TenantId, from_ms: i64) -> Result<i64, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let v: i64 = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS c FROM usage_records \
                     WHERE tenant_id = $1 AND ts_ms >= $2",
                )
                .bind(tenant.as_str())
                .bind(from_ms)
                .fetch_one(&mut *tx)
                .await?
                .try_get("c")?;
                tx.commit().await?;
                Ok(v)
            }

            pub(crate) async fn sql_put_price(&self, _sys: &SystemCtx, p: &Price, actor: &AuditActor) -> Result<(), StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                sqlx::query(
                    "INSERT INTO prices (model, plan, prompt_per_1k_usd, completion_per_1k_usd, per_request_usd) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, plan) DO UPDATE SET \
                     prompt_per_1k_usd = EXCLUDED.prompt_per_1k_usd, completion_per_1k_usd = EXCLUDED.completion_per_1k_usd, \
                     per_request_usd = EXCLUDED.per_request_usd",
                )
                .bind(&p.model)
                .bind(&p.plan)
                .bind(p.prompt_per_1k_usd)
                .bind(p.completion_per_1k_usd)
                .bind(p.per_request_usd)
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, None, "price.put", &format!("{}/{}", p.model, p.plan), actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_list_prices(&self) -> Result<Vec<Price>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let rows = sqlx::query(
                    "SELECT model, plan, prompt_per_1k_usd, completion_per_1k_usd, per_request_usd FROM prices ORDER BY model, plan",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        Ok(Price {
                            model: r.try_get("model")?,
                            plan: r.try_get("plan")?,
                            prompt_per_1k_usd: r.try_get("prompt_per_1k_usd")?,
                            completion_per_1k_usd: r.try_get("completion_per_1k_usd")?,
                            per_request_usd: r.try_get("per_request_usd")?,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn sql_delete_price(&self, _sys: &SystemCtx, model: &str, plan: &str, actor: &AuditActor) -> Result<(), StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let gone = sqlx::query("DELETE FROM prices WHERE model = $1 AND plan = $2")
                    .bind(model)
                    .bind(plan)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("price", &format!("{model}/{plan}")));
                }
                append_audit(&mut tx, None, "price.delete", &format!("{model}/{plan}"), actor).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        fn usage_scope<'a>(scope: &'a UsageScope<'a>) -> (TxScope<'a>, Option<&'a str>) {
            match scope {
                UsageScope::Tenant(ctx) => (TxScope::Tenant(ctx.tenant_id().as_str()), Some(ctx.tenant_id().as_str())),
                UsageScope::System(_, t) => (TxScope::System, t.map(|t| t.as_str())),
            }
        }
    };
}

pub(crate) use sql_usage_store;
