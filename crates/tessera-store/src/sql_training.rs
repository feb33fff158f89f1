//! Training jobs in SQL, shared by the SQLite and PostgreSQL stores:
//! expanded inside `sql_metadata_store!` (which supplies `Tx`, `DbRow`,
//! `append_audit` and the imports); its trait methods delegate here.
//! `$skip` is the row-lock suffix that lets replicas claim different jobs
//! at once (PostgreSQL's `FOR UPDATE SKIP LOCKED`; SQLite has one writer).

macro_rules! sql_training_store {
    ($store:ty, $db:ty, $skip:literal, $lock_of_t:literal) => {
        const JOB_COLUMNS: &str =
            "id, tenant_id, status, spec, progress, model, version, metrics, error, created_at, updated_at, created_by";

        fn job_from_row(r: &DbRow) -> Result<Job, StoreError> {
            let status: String = r.try_get("status")?;
            let spec: String = r.try_get("spec")?;
            let progress: String = r.try_get("progress")?;
            let metrics: Option<String> = r.try_get("metrics")?;
            Ok(Job {
                id: r.try_get("id")?,
                status: JobStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown job status {status:?}")))?,
                spec: serde_json::from_str(&spec).map_err(corrupt)?,
                progress: serde_json::from_str(&progress).map_err(corrupt)?,
                model: r.try_get("model")?,
                version: r.try_get("version")?,
                metrics: metrics.map(|m| serde_json::from_str(&m)).transpose().map_err(corrupt)?,
                error: r.try_get("error")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                updated_at: Timestamp::from_millis(r.try_get("updated_at")?),
                created_by: r.try_get("created_by")?,
            })
        }

        /// One of the tenant's jobs, inside the caller's transaction.
        async fn job_in_tx(tx: &mut Tx, tenant: &TenantId, id: &str) -> Result<Job, StoreError> {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {JOB_COLUMNS} FROM training_jobs WHERE tenant_id = $1 AND id = $2"
            )))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
            job_from_row(&row.ok_or_else(|| StoreError::not_found("training job", id))?)
        }

        impl $store {
            pub(crate) async fn sql_create_training_job(
                &self,
                ctx: &TenantCtx,
                spec: &JobSpec,
                actor: &AuditActor,
            ) -> Result<Job, StoreError> {
                let tenant = ctx.tenant_id();
                let now = Timestamp::now();
                let job = Job {
                    id: tessera_core::training::new_job_id(),
                    status: JobStatus::Queued,
                    spec: spec.clone(),
                    progress: Progress { phase: "queued".into(), ..Progress::default() },
                    model: None,
                    version: None,
                    metrics: None,
                    error: None,
                    created_at: now,
                    updated_at: now,
                    created_by: actor.key_id.clone(),
                };
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                sqlx::query(
                    "INSERT INTO training_jobs (id, tenant_id, status, spec, progress, created_at, updated_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&job.id)
                .bind(tenant.as_str())
                .bind(job.status.as_str())
                .bind(to_json(&job.spec)?)
                .bind(to_json(&job.progress)?)
                .bind(now.millis())
                .bind(now.millis())
                .bind(&job.created_by)
                .execute(&mut *tx)
                .await?;
                append_audit(&mut tx, Some(tenant), "training_job.create", &job.id, actor).await?;
                tx.commit().await?;
                Ok(job)
            }

            pub(crate) async fn sql_get_training_job(&self, ctx: &TenantCtx, id: &str) -> Result<Job, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let job = job_in_tx(&mut tx, tenant, id).await?;
                tx.commit().await?;
                Ok(job)
            }

            pub(crate) async fn sql_list_training_jobs(&self, ctx: &TenantCtx) -> Result<Vec<Job>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM training_jobs WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT 200"
                )))
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(job_from_row).collect()
            }

            pub(crate) async fn sql_training_job_for_version(
                &self,
                ctx: &TenantCtx,
                model: &str,
                version: i64,
            ) -> Result<Option<Job>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM training_jobs \
                     WHERE tenant_id = $1 AND model = $2 AND version = $3 AND status = 'succeeded'"
                )))
                .bind(tenant.as_str())
                .bind(model)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                row.as_ref().map(job_from_row).transpose()
            }

            pub(crate) async fn sql_cancel_training_job(
                &self,
                ctx: &TenantCtx,
                id: &str,
                actor: &AuditActor,
            ) -> Result<Job, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let done = sqlx::query(
                    "UPDATE training_jobs SET status = 'cancelled', updated_at = $1 \
                     WHERE tenant_id = $2 AND id = $3 AND status IN ('queued', 'running')",
                )
                .bind(Timestamp::now().millis())
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let job = job_in_tx(&mut tx, tenant, id).await?;
                if done == 0 {
                    return Err(StoreError::Conflict(format!(
                        "training job {id} is {}; only a queued or running job can be cancelled",
                        job.status.as_str()
                    )));
                }
                append_audit(&mut tx, Some(tenant), "training_job.cancel", id, actor).await?;
                tx.commit().await?;
                Ok(job)
            }

            pub(crate) async fn sql_claim_training_job(
                &self,
                _sys: &SystemCtx,
                owner: &str,
            ) -> Result<Option<(TenantId, Job)>, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                // The oldest queued job of a tenant below its plan's bound
                // on running jobs.
                let picked = sqlx::query(concat!(
                    "SELECT j.id, j.tenant_id FROM training_jobs j JOIN tenants t ON t.id = j.tenant_id \
                     LEFT JOIN plans p ON p.name = t.plan WHERE j.status = 'queued' \
                     AND (p.training_jobs IS NULL OR p.training_jobs > \
                          (SELECT COUNT(*) FROM training_jobs r WHERE r.tenant_id = j.tenant_id AND r.status = 'running')) \
                     ORDER BY j.created_at, j.id LIMIT 1",
                    $skip
                ))
                .fetch_optional(&mut *tx)
                .await?;
                let Some(picked) = picked else {
                    tx.commit().await?;
                    return Ok(None);
                };
                let id: String = picked.try_get("id")?;
                let tenant: String = picked.try_get("tenant_id")?;
                // Two replicas claiming for one tenant at once: the tenant's
                // row orders them, and the second counts again.
                let bound = sqlx::query(concat!(
                    "SELECT p.training_jobs FROM tenants t LEFT JOIN plans p ON p.name = t.plan WHERE t.id = $1",
                    $lock_of_t
                ))
                .bind(&tenant)
                .fetch_one(&mut *tx)
                .await?
                .try_get::<Option<i64>, _>("training_jobs")?;
                if let Some(bound) = bound {
                    let running: i64 = sqlx::query("SELECT COUNT(*) AS n FROM training_jobs WHERE tenant_id = $1 AND status = 'running'")
                        .bind(&tenant)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("n")?;
                    if running >= bound {
                        tx.commit().await?;
                        return Ok(None);
                    }
                }
                sqlx::query(
                    "UPDATE training_jobs SET status = 'running', owner = $1, updated_at = $2 WHERE id = $3 AND status = 'queued'",
                )
                .bind(owner)
                .bind(Timestamp::now().millis())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM training_jobs WHERE id = $1")))
                    .bind(&id)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                let tenant: String = row.try_get("tenant_id")?;
                let tenant = TenantId::parse(&tenant).map_err(|e| StoreError::Corrupt(e.message))?;
                Ok(Some((tenant, job_from_row(&row)?)))
            }

            pub(crate) async fn sql_update_training_job(
                &self,
                _sys: &SystemCtx,
                id: &str,
                update: &JobUpdate<'_>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let metrics = update.metrics.map(to_json).transpose()?;
                let changed = sqlx::query(
                    "UPDATE training_jobs SET status = $1, progress = $2, model = COALESCE($3, model), \
                     version = COALESCE($4, version), metrics = COALESCE($5, metrics), error = COALESCE($6, error), \
                     updated_at = $7 WHERE id = $8 AND status = 'running'",
                )
                .bind(update.status.as_str())
                .bind(to_json(update.progress)?)
                .bind(update.model)
                .bind(update.version)
                .bind(metrics)
                .bind(update.error)
                .bind(Timestamp::now().millis())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(changed == 1)
            }

            pub(crate) async fn sql_fail_stale_training_jobs(
                &self,
                _sys: &SystemCtx,
                before: Timestamp,
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin(TxScope::System, true).await?;
                let n = sqlx::query(
                    "UPDATE training_jobs SET status = 'failed', \
                     error = 'the server running it stopped; start the job again', updated_at = $1 \
                     WHERE status = 'running' AND updated_at < $2",
                )
                .bind(Timestamp::now().millis())
                .bind(before.millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(n)
            }
        }
    };
}

pub(crate) use sql_training_store;
