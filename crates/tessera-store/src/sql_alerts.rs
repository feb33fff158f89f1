//! Alert rules and their events in SQL, shared by the SQLite and
//! PostgreSQL stores: expanded inside `sql_metadata_store!` (which supplies
//! `Tx`, `DbRow`, `append_audit` and the imports); its trait methods
//! delegate here. A tenant's rules are its own; platform rules (no tenant)
//! are written and read by platform keys and the controller only.

macro_rules! sql_alerts_store {
    ($store:ty, $db:ty) => {
        const ALERT_COLUMNS: &str = "id, tenant_id, body, secret, revision";

        fn alert_from_row(r: &DbRow) -> Result<AlertRule, StoreError> {
            let body: String = r.try_get("body")?;
            let mut rule: AlertRule = serde_json::from_str(&body).map_err(corrupt)?;
            let tenant: Option<String> = r.try_get("tenant_id")?;
            rule.tenant_id = tenant.map(TenantId::from_stored);
            rule.secret = r.try_get("secret")?;
            rule.revision = r.try_get("revision")?;
            Ok(rule)
        }

        /// `tenant_id = $n` for a tenant, `tenant_id IS NULL` for the platform.
        fn alert_owner<'a>(owner: &'a KeyOwner<'a>) -> (TxScope<'a>, &'a str, &'static str) {
            match owner {
                KeyOwner::Tenant(ctx) => (
                    TxScope::Tenant(ctx.tenant_id().as_str()),
                    ctx.tenant_id().as_str(),
                    "tenant_id = $1",
                ),
                KeyOwner::Platform(_) => (TxScope::System, "", "($1 = '' AND tenant_id IS NULL)"),
            }
        }

        impl $store {
            pub(crate) async fn sql_create_alert_rule(
                &self,
                owner: KeyOwner<'_>,
                rule: &AlertRule,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let (scope, tenant, _) = alert_owner(&owner);
                let tenant = (!tenant.is_empty()).then_some(tenant);
                let mut tx = self.begin(scope, true).await?;
                let exists = sqlx::query("SELECT 1 AS one FROM alert_rules WHERE id = $1")
                    .bind(&rule.id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    tx.commit().await?;
                    return Err(StoreError::Conflict(format!("alert rule {} exists", rule.id)));
                }
                sqlx::query(
                    "INSERT INTO alert_rules (id, tenant_id, body, secret, severity, firing, next_at, revision, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 0, $6, 1, $7)",
                )
                .bind(&rule.id)
                .bind(tenant)
                .bind(to_json(rule)?)
                .bind(&rule.secret)
                .bind(rule.spec.severity.as_str())
                .bind(rule.next_evaluation_at.millis())
                .bind(rule.created_at.millis())
                .execute(&mut *tx)
                .await?;
                let tenant_id = rule.tenant_id.as_ref();
                append_audit(&mut tx, tenant_id, "alert_rule.create", &rule.id, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_list_alert_rules(&self, owner: KeyOwner<'_>) -> Result<Vec<AlertRule>, StoreError> {
                let (scope, tenant, filter) = alert_owner(&owner);
                let mut tx = self.begin(scope, false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ALERT_COLUMNS} FROM alert_rules WHERE {filter} ORDER BY created_at, id LIMIT 1000"
                )))
                .bind(tenant)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(alert_from_row).collect()
            }

            pub(crate) async fn sql_get_alert_rule(&self, owner: KeyOwner<'_>, id: &str) -> Result<AlertRule, StoreError> {
                let (scope, tenant, filter) = alert_owner(&owner);
                let mut tx = self.begin(scope, false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ALERT_COLUMNS} FROM alert_rules WHERE {filter} AND id = $2"
                )))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                alert_from_row(&row.ok_or_else(|| StoreError::not_found("alert rule", id))?)
            }

            pub(crate) async fn sql_delete_alert_rule(
                &self,
                owner: KeyOwner<'_>,
                id: &str,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let (scope, tenant, filter) = alert_owner(&owner);
                let mut tx = self.begin(scope, true).await?;
                let gone = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM alert_rules WHERE {filter} AND id = $2"
                )))
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("alert rule", id));
                }
                sqlx::query("DELETE FROM alert_events WHERE rule_id = $1").bind(id).execute(&mut *tx).await?;
                let tenant = owner_tenant(&owner);
                append_audit(&mut tx, tenant, "alert_rule.delete", id, actor).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_claim_alert_rules(
                &self,
                _sys: &SystemCtx,
                owner: &str,
                now: Timestamp,
                lease_ms: i64,
            ) -> Result<Vec<AlertRule>, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE alert_rules SET owner = $1, lease_until = $2 \
                     WHERE id IN (SELECT id FROM alert_rules WHERE next_at <= $3 \
                                  AND (lease_until < $3 OR owner = $1) ORDER BY next_at LIMIT 500) \
                     AND (lease_until < $3 OR owner = $1) \
                     RETURNING {ALERT_COLUMNS}"
                )))
                .bind(owner)
                .bind(now.millis() + lease_ms)
                .bind(now.millis())
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(alert_from_row).collect()
            }

            pub(crate) async fn sql_save_alert_rule(
                &self,
                _sys: &SystemCtx,
                rule: &AlertRule,
                events: &[AlertEvent],
                owner: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let done = sqlx::query(
                    "UPDATE alert_rules SET body = $1, firing = $2, next_at = $3, revision = revision + 1, \
                     owner = NULL, lease_until = 0 WHERE id = $4 AND revision = $5 AND owner = $6",
                )
                .bind(to_json(rule)?)
                .bind(i64::try_from(rule.firing()).unwrap_or(i64::MAX))
                .bind(rule.next_evaluation_at.millis())
                .bind(&rule.id)
                .bind(rule.revision)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done == 0 {
                    tx.commit().await?;
                    return Ok(false);
                }
                insert_alert_events(&mut tx, rule, events).await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(crate) async fn sql_append_alert_events(
                &self,
                _sys: &SystemCtx,
                rule: &AlertRule,
                events: &[AlertEvent],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                insert_alert_events(&mut tx, rule, events).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(crate) async fn sql_list_alert_events(
                &self,
                owner: KeyOwner<'_>,
                id: &str,
                limit: u32,
            ) -> Result<Vec<AlertEvent>, StoreError> {
                let (scope, tenant, _) = alert_owner(&owner);
                let mut tx = self.begin(scope, false).await?;
                let rows = sqlx::query(
                    "SELECT body FROM alert_events WHERE rule_id = $1 AND COALESCE(tenant_id, '') = $2 \
                     ORDER BY at DESC LIMIT $3",
                )
                .bind(id)
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        let body: String = r.try_get("body")?;
                        serde_json::from_str(&body).map_err(corrupt)
                    })
                    .collect()
            }

            pub(crate) async fn sql_firing_alerts(&self, _sys: &SystemCtx) -> Result<Vec<(Option<TenantId>, String, u64)>, StoreError> {
                let mut tx = self.begin(TxScope::System, false).await?;
                let rows = sqlx::query(
                    "SELECT tenant_id, severity, CAST(SUM(firing) AS BIGINT) AS n FROM alert_rules \
                     GROUP BY tenant_id, severity",
                )
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        let tenant: Option<String> = r.try_get("tenant_id")?;
                        let n: i64 = r.try_get("n")?;
                        Ok((tenant.map(TenantId::from_stored), r.try_get("severity")?, u64::try_from(n).unwrap_or(0)))
                    })
                    .collect()
            }
        }

        fn owner_tenant<'a>(owner: &'a KeyOwner<'a>) -> Option<&'a TenantId> {
            match owner {
                KeyOwner::Tenant(ctx) => Some(ctx.tenant_id()),
                KeyOwner::Platform(_) => None,
            }
        }

        async fn insert_alert_events(tx: &mut Tx, rule: &AlertRule, events: &[AlertEvent]) -> Result<(), StoreError> {
            for e in events {
                sqlx::query("INSERT INTO alert_events (rule_id, tenant_id, at, body) VALUES ($1, $2, $3, $4)")
                    .bind(&rule.id)
                    .bind(rule.tenant_id.as_ref().map(TenantId::as_str))
                    .bind(e.at.millis())
                    .bind(to_json(e)?)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }
    };
}

pub(crate) use sql_alerts_store;
