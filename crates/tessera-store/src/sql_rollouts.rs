//! Rollouts in SQL, shared by the SQLite and PostgreSQL stores: expanded
//! inside `sql_metadata_store!` (which supplies `Tx`, `DbRow`,
//! `append_audit` and the imports); its trait methods delegate here. A
//! rollout write changes the rollout, the model's deployment and its
//! `champion` alias in one transaction with its audit entries, so a crash
//! or a lost database never leaves a step half-written.

macro_rules! sql_rollouts_store {
    ($store:ty, $db:ty) => {
        const ROLLOUT_COLUMNS: &str = "id, tenant_id, model_id, body, baseline, revision";

        fn rollout_from_row(r: &DbRow) -> Result<Rollout, StoreError> {
            let body: String = r.try_get("body")?;
            let mut rollout: Rollout = serde_json::from_str(&body).map_err(corrupt)?;
            rollout.model_id = r.try_get("model_id")?;
            rollout.baseline = r.try_get("baseline")?;
            rollout.revision = r.try_get("revision")?;
            rollout.interval_ms = tessera_core::features::parse_duration(&rollout.interval)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .map_err(|e| StoreError::Corrupt(format!("rollout {} interval: {e}", rollout.id)))?;
            Ok(rollout)
        }

        /// Applies a write's deployment change, alias move and audit
        /// entries inside the caller's transaction.
        async fn rollout_effects(
            tx: &mut Tx,
            tenant: &TenantId,
            write: &RolloutWrite,
            actor: &AuditActor,
        ) -> Result<(), StoreError> {
            let r = &write.rollout;
            if let DeploymentChange::Put(d) = &write.deployment {
                put_deployment_in_tx(tx, &r.model_id, Some(tenant), &to_json(d)?, actor).await?;
            }
            if write.promote {
                let champion = tessera_core::rollout::CHAMPION;
                put_alias_in_tx(tx, &r.model_id, Some(tenant), champion, r.candidate, actor).await?;
            }
            let target = format!("{} {} step {}", r.id, r.model, r.current().label());
            for action in &write.audit {
                append_audit(tx, Some(tenant), action, &target, actor).await?;
            }
            Ok(())
        }

        impl $store {
            pub(crate) async fn sql_create_rollout(
                &self,
                ctx: &TenantCtx,
                write: &RolloutWrite,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let tenant = ctx.tenant_id();
                let r = &write.rollout;
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let active = sqlx::query("SELECT id FROM rollouts WHERE model_id = $1 AND state IN ('running', 'paused')")
                    .bind(&r.model_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(active) = active {
                    let id: String = active.try_get("id")?;
                    return Err(StoreError::Conflict(format!("model {} already has an active rollout, {id}", r.model)));
                }
                sqlx::query(
                    "INSERT INTO rollouts (id, tenant_id, model_id, state, body, baseline, next_at, revision, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)",
                )
                .bind(&r.id)
                .bind(tenant.as_str())
                .bind(&r.model_id)
                .bind(r.state.as_str())
                .bind(to_json(r)?)
                .bind(&r.baseline)
                .bind(r.next_evaluation_at.millis())
                .bind(r.created_at.millis())
                .execute(&mut *tx)
                .await?;
                rollout_effects(&mut tx, tenant, write, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_get_rollout(&self, ctx: &TenantCtx, id: &str) -> Result<Rollout, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE tenant_id = $1 AND id = $2"
                )))
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                rollout_from_row(&row.ok_or_else(|| StoreError::not_found("rollout", id))?)
            }

            pub(crate) async fn sql_list_rollouts(&self, ctx: &TenantCtx, model_id: Option<&str>) -> Result<Vec<Rollout>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE tenant_id = $1 AND ($2 = '' OR model_id = $2) \
                     ORDER BY created_at DESC, id LIMIT 200"
                )))
                .bind(tenant.as_str())
                .bind(model_id.unwrap_or(""))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(rollout_from_row).collect()
            }

            pub(crate) async fn sql_claim_rollouts(
                &self,
                _sys: &SystemCtx,
                owner: &str,
                now: Timestamp,
                lease_ms: i64,
            ) -> Result<Vec<(TenantId, Rollout)>, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                // The outer condition is checked again on each row as it is
                // updated, so two replicas never both take one lease.
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE rollouts SET owner = $1, lease_until = $2 \
                     WHERE id IN (SELECT id FROM rollouts WHERE state = 'running' AND next_at <= $3 \
                                  AND (lease_until < $3 OR owner = $1) ORDER BY next_at LIMIT 100) \
                     AND state = 'running' AND (lease_until < $3 OR owner = $1) \
                     RETURNING {ROLLOUT_COLUMNS}"
                )))
                .bind(owner)
                .bind(now.millis() + lease_ms)
                .bind(now.millis())
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        let tenant: String = r.try_get("tenant_id")?;
                        Ok((TenantId::from_stored(tenant), rollout_from_row(r)?))
                    })
                    .collect()
            }

            pub(crate) async fn sql_save_rollout(
                &self,
                ctx: &TenantCtx,
                write: &RolloutWrite,
                owner: Option<&str>,
                actor: &AuditActor,
            ) -> Result<bool, StoreError> {
                let tenant = ctx.tenant_id();
                let r = &write.rollout;
                let now = Timestamp::now();
                let mut stored = r.clone();
                stored.updated_at = now;
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                // The controller hands its lease back with the write.
                let done = sqlx::query(
                    "UPDATE rollouts SET state = $1, body = $2, next_at = $3, revision = revision + 1, updated_at = $4, \
                     owner = CASE WHEN $5 = '' THEN owner ELSE NULL END, \
                     lease_until = CASE WHEN $5 = '' THEN lease_until ELSE 0 END \
                     WHERE tenant_id = $6 AND id = $7 AND revision = $8 AND ($5 = '' OR owner = $5)",
                )
                .bind(r.state.as_str())
                .bind(to_json(&stored)?)
                .bind(r.next_evaluation_at.millis())
                .bind(now.millis())
                .bind(owner.unwrap_or(""))
                .bind(tenant.as_str())
                .bind(&r.id)
                .bind(r.revision)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    tx.commit().await?;
                    return Ok(false);
                }
                rollout_effects(&mut tx, tenant, write, actor).await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}

pub(crate) use sql_rollouts_store;
