//! The streaming feature pipeline (F3) as a consumer of the event log: group
//! `features` reads every tenant's `events` topic; a batch's events of a
//! stream view's type go to its tiles and the touched keys' window values to
//! the online store ([`tessera_features::stream::process`]) before the batch
//! is committed, so a crash redelivers it and the tiles count nothing twice.
//! A stream view aggregates the events the consumer reads after the view is
//! defined (and its catalog read here, within the cache TTL).

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tessera_core::auth::SystemCtx;
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tessera_events::runtime::Handler;
use tessera_events::{Record, Topic};
use tessera_features::Stores;
use tessera_features::stream::{Event, process, stream_views};
use tessera_store::MetadataStore;

use crate::feature_catalogs::FeatureCatalogs;

/// The consumer group of the pipeline.
pub const GROUP: &str = "features";

#[derive(Default)]
struct Stats {
    added: Counter,
    duplicates: Counter,
    late: Counter,
}

pub struct StreamFeatures {
    store: Arc<dyn MetadataStore>,
    catalogs: Arc<FeatureCatalogs>,
    stores: Stores,
    /// The pipeline reads every tenant's catalog: platform authority, held
    /// by this task only.
    sys: SystemCtx,
    stats: Arc<Stats>,
}

impl StreamFeatures {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        catalogs: Arc<FeatureCatalogs>,
        stores: Stores,
        sys: SystemCtx,
    ) -> Self {
        Self { store, catalogs, stores, sys, stats: Arc::default() }
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_feature_stream_events",
            "Events added to stream feature views' windows.",
            self.stats.added.clone(),
        );
        r.register(
            "tessera_feature_stream_duplicates",
            "Events handed to the stream pipeline again and not counted twice.",
            self.stats.duplicates.clone(),
        );
        r.register(
            "tessera_feature_stream_late_events",
            "Events behind a stream view's watermark (its allowed lateness): counted, not added.",
            self.stats.late.clone(),
        );
    }
}

#[async_trait]
impl Handler for StreamFeatures {
    async fn handle(
        &self,
        tenant: &TenantId,
        _topic: Topic,
        records: &[Record],
    ) -> Result<(), String> {
        let ctx = self.sys.tenant(tenant.clone());
        let catalog =
            self.catalogs.get(&*self.store, &ctx).await.map_err(|e| format!("catalog: {e}"))?;
        if stream_views(&catalog).is_empty() {
            return Ok(());
        }
        let events: Vec<Event<'_>> = records
            .iter()
            .map(|r| Event {
                offset: r.offset,
                event_type: &r.event_type,
                entity: &r.entity,
                ts: r.ts,
                ingested: r.ingested_at,
                properties: &r.properties,
            })
            .collect();
        let done = process(&catalog, &self.stores, tenant, &events, Timestamp::now())
            .await
            .map_err(|e| e.to_string())?;
        for (view, a) in done {
            self.stats.added.inc_by(a.added);
            self.stats.duplicates.inc_by(a.duplicates);
            if a.late > 0 {
                self.stats.late.inc_by(a.late);
                tracing::debug!(tenant = %tenant, view, late = a.late, "late events left out");
            }
        }
        Ok(())
    }
}
