//! Feature store definitions in SQL, shared by the SQLite and PostgreSQL
//! stores: expanded inside `sql_metadata_store!` (which supplies `Tx`,
//! `DbRow`, `append_audit` and the imports); its trait methods delegate here.

macro_rules! sql_features_store {
    ($store:ty, $db:ty) => {
        fn feature_def_from_row(r: &DbRow) -> Result<StoredDefinition, StoreError> {
            let kind: String = r.try_get("kind")?;
            let spec: String = r.try_get("spec")?;
            Ok(StoredDefinition {
                kind: Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("unknown definition kind {kind:?}")))?,
                name: r.try_get("name")?,
                version: u32::try_from(r.try_get::<i64, _>("version")?).map_err(|e| StoreError::Corrupt(format!("definition version: {e}")))?,
                spec: serde_json::from_str(&spec).map_err(corrupt)?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
            })
        }

        impl $store {
            pub(crate) async fn sql_put_feature_def(
                &self,
                ctx: &TenantCtx,
                def: &FeatureDefWrite<'_>,
                actor: &AuditActor,
            ) -> Result<StoredDefinition, StoreError> {
                let tenant = ctx.tenant_id();
                let now = Timestamp::now();
                let kind = def.kind.as_str();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let current = sqlx::query(
                    "SELECT kind, name, version, spec, created_at, updated_at FROM feature_defs \
                     WHERE tenant_id = $1 AND kind = $2 AND name = $3",
                )
                .bind(tenant.as_str())
                .bind(kind)
                .bind(def.name)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| feature_def_from_row(&r))
                .transpose()?;
                let stored = match (current, def.expected) {
                    (None, None) => {
                        let d = StoredDefinition {
                            kind: def.kind,
                            name: def.name.to_owned(),
                            version: 1,
                            spec: def.spec.clone(),
                            created_at: now,
                            updated_at: now,
                        };
                        sqlx::query(
                            "INSERT INTO feature_defs (tenant_id, kind, name, version, spec, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(tenant.as_str())
                        .bind(kind)
                        .bind(def.name)
                        .bind(1i64)
                        .bind(to_json(def.spec)?)
                        .bind(now.millis())
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await?;
                        append_audit(&mut tx, Some(tenant), &format!("feature_{kind}.create"), def.name, actor).await?;
                        d
                    }
                    (Some(c), Some(v)) if c.version == v => {
                        if c.spec == *def.spec {
                            tx.commit().await?;
                            return Ok(c);
                        }
                        sqlx::query(
                            "UPDATE feature_defs SET version = $1, spec = $2, updated_at = $3 \
                             WHERE tenant_id = $4 AND kind = $5 AND name = $6 AND version = $7",
                        )
                        .bind(i64::from(v) + 1)
                        .bind(to_json(def.spec)?)
                        .bind(now.millis())
                        .bind(tenant.as_str())
                        .bind(kind)
                        .bind(def.name)
                        .bind(i64::from(v))
                        .execute(&mut *tx)
                        .await?;
                        append_audit(
                            &mut tx,
                            Some(tenant),
                            &format!("feature_{kind}.update"),
                            &format!("{}@{}", def.name, v + 1),
                            actor,
                        )
                        .await?;
                        StoredDefinition { version: v + 1, spec: def.spec.clone(), updated_at: now, ..c }
                    }
                    (Some(c), _) => {
                        return Err(StoreError::Conflict(format!(
                            "{kind} {:?} is at version {} (changed meanwhile); read it and apply again",
                            def.name, c.version
                        )))
                    }
                    (None, Some(_)) => return Err(StoreError::not_found("feature definition", def.name)),
                };
                tx.commit().await?;
                Ok(stored)
            }

            pub(crate) async fn sql_list_feature_defs(
                &self,
                ctx: &TenantCtx,
                kind: Option<Kind>,
            ) -> Result<Vec<StoredDefinition>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(
                    "SELECT kind, name, version, spec, created_at, updated_at FROM feature_defs \
                     WHERE tenant_id = $1 AND ($2 = '' OR kind = $2) ORDER BY kind, name",
                )
                .bind(tenant.as_str())
                .bind(kind.map_or("", Kind::as_str))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(feature_def_from_row).collect()
            }

            pub(crate) async fn sql_delete_feature_def(
                &self,
                ctx: &TenantCtx,
                kind: Kind,
                name: &str,
                actor: &AuditActor,
            ) -> Result<(), StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let gone = sqlx::query("DELETE FROM feature_defs WHERE tenant_id = $1 AND kind = $2 AND name = $3")
                    .bind(tenant.as_str())
                    .bind(kind.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if gone == 0 {
                    return Err(StoreError::not_found("feature definition", name));
                }
                append_audit(&mut tx, Some(tenant), &format!("feature_{}.delete", kind.as_str()), name, actor).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_features_store;
