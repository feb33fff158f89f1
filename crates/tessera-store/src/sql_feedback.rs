//! Feedback in SQL, shared by the SQLite and PostgreSQL stores: expanded
//! inside `sql_metadata_store!` (which supplies `Tx`, `DbRow` and the
//! imports); its trait methods delegate here. Feedback is data-plane
//! traffic, like events: written without an audit entry.

macro_rules! sql_feedback_store {
    ($store:ty, $db:ty) => {
        const FEEDBACK_COLUMNS: &str = "prediction_id, model, version, kind, predicted_label, predicted_value, \
             true_label, true_value, predicted_at, received_at, input, entity";

        fn feedback_from_row(r: &DbRow) -> Result<JoinedFeedback, StoreError> {
            let kind: String = r.try_get("kind")?;
            let true_label: Option<String> = r.try_get("true_label")?;
            let true_value: Option<f64> = r.try_get("true_value")?;
            let truth = match (kind.as_str(), true_label, true_value) {
                ("label", Some(l), _) => Truth::Label(l),
                ("value", _, Some(v)) => Truth::Value(v),
                ("score", _, Some(v)) => Truth::Score(v),
                (k, ..) => return Err(StoreError::Corrupt(format!("feedback of kind {k:?} without its truth"))),
            };
            let predicted_label: Option<String> = r.try_get("predicted_label")?;
            let predicted_value: Option<f64> = r.try_get("predicted_value")?;
            let entity: Option<String> = r.try_get("entity")?;
            Ok(JoinedFeedback {
                prediction_id: r.try_get("prediction_id")?,
                model: r.try_get("model")?,
                version: r.try_get("version")?,
                predicted: predicted_label.map(Predicted::Label).or(predicted_value.map(Predicted::Value)),
                truth,
                predicted_at: Timestamp::from_millis(r.try_get("predicted_at")?),
                received_at: Timestamp::from_millis(r.try_get("received_at")?),
                input: r.try_get("input")?,
                entity: entity.map(|e| serde_json::from_str(&e)).transpose().map_err(corrupt)?,
            })
        }

        impl $store {
            pub(crate) async fn sql_put_feedback(
                &self,
                ctx: &TenantCtx,
                rows: &[JoinedFeedback],
            ) -> Result<Vec<bool>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), true).await?;
                let mut fresh = Vec::with_capacity(rows.len());
                for f in rows {
                    let known = sqlx::query("SELECT 1 AS one FROM feedback WHERE tenant_id = $1 AND prediction_id = $2")
                        .bind(tenant.as_str())
                        .bind(&f.prediction_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    let (predicted_label, predicted_value) = match &f.predicted {
                        Some(Predicted::Label(l)) => (Some(l.as_str()), None),
                        Some(Predicted::Value(v)) => (None, Some(*v)),
                        None => (None, None),
                    };
                    let (true_label, true_value) = match &f.truth {
                        Truth::Label(l) => (Some(l.as_str()), None),
                        Truth::Value(v) | Truth::Score(v) => (None, Some(*v)),
                    };
                    let entity = f.entity.as_ref().map(serde_json::to_string).transpose()
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
                    sqlx::query(
                        "INSERT INTO feedback (tenant_id, prediction_id, model, version, kind, predicted_label, predicted_value, \
                         true_label, true_value, predicted_at, received_at, input, entity) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                         ON CONFLICT (tenant_id, prediction_id) DO UPDATE SET kind = excluded.kind, \
                         true_label = excluded.true_label, true_value = excluded.true_value, received_at = excluded.received_at",
                    )
                    .bind(tenant.as_str())
                    .bind(&f.prediction_id)
                    .bind(&f.model)
                    .bind(&f.version)
                    .bind(f.truth.kind())
                    .bind(predicted_label)
                    .bind(predicted_value)
                    .bind(true_label)
                    .bind(true_value)
                    .bind(f.predicted_at.millis())
                    .bind(f.received_at.millis())
                    .bind(&f.input)
                    .bind(entity)
                    .execute(&mut *tx)
                    .await?;
                    fresh.push(!known);
                }
                tx.commit().await?;
                Ok(fresh)
            }

            pub(crate) async fn sql_feedback_quality(
                &self,
                ctx: &TenantCtx,
                model: &str,
                version: Option<&str>,
                since: Timestamp,
            ) -> Result<Vec<QualityGroup>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(
                    "SELECT version, kind, predicted_label, true_label, \
                     CASE WHEN predicted_value IS NULL THEN 0 ELSE 1 END AS has_value, COUNT(*) AS n, \
                     COALESCE(SUM(ABS(predicted_value - true_value)), 0.0) AS abs_error, \
                     COALESCE(SUM((predicted_value - true_value) * (predicted_value - true_value)), 0.0) AS squared_error, \
                     COALESCE(SUM(true_value), 0.0) AS total \
                     FROM feedback WHERE tenant_id = $1 AND model = $2 AND received_at >= $3 AND ($4 = '' OR version = $4) \
                     GROUP BY version, kind, predicted_label, true_label, has_value",
                )
                .bind(tenant.as_str())
                .bind(model)
                .bind(since.millis())
                .bind(version.unwrap_or(""))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        let kind: String = r.try_get("kind")?;
                        let has_value: i32 = r.try_get("has_value")?;
                        let predicted = if kind == "value" {
                            (has_value == 1).then(String::new)
                        } else {
                            r.try_get("predicted_label")?
                        };
                        Ok(QualityGroup {
                            version: r.try_get("version")?,
                            kind,
                            predicted,
                            truth: r.try_get("true_label")?,
                            count: u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                            abs_error: r.try_get("abs_error")?,
                            squared_error: r.try_get("squared_error")?,
                            sum: r.try_get("total")?,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn sql_list_feedback(
                &self,
                ctx: &TenantCtx,
                model: &str,
                version: Option<&str>,
                since: Timestamp,
                limit: usize,
            ) -> Result<Vec<JoinedFeedback>, StoreError> {
                let tenant = ctx.tenant_id();
                let mut tx = self.begin(TxScope::Tenant(tenant.as_str()), false).await?;
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE tenant_id = $1 AND model = $2 AND received_at >= $3 \
                     AND ($4 = '' OR version = $4) ORDER BY predicted_at, prediction_id LIMIT $5"
                )))
                .bind(tenant.as_str())
                .bind(model)
                .bind(since.millis())
                .bind(version.unwrap_or(""))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter().map(feedback_from_row).collect()
            }
        }
    };
}

pub(crate) use sql_feedback_store;
