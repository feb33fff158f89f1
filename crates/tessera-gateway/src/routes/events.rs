//! Events (F4): `POST /v1/events` stores a batch (all of it or none),
//! `GET /v1/events` reads a page back, `GET /v1/events/stream` tails the log
//! as server-sent events, resumable with `Last-Event-ID` (the offset).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tessera_core::ids::TenantId;
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_events::ingest::{EventIn, IngestError, check_batch};
use tessera_events::{EventLog, Filter, LogError, Position, Record, Topic};
use tessera_serving::event_schemas::SchemaCheck;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// How long a tail waits for news before it sends a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// 1 to `events.max_batch` (default 1000) events.
    #[schema(min_items = 1)]
    pub events: Vec<EventIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAnswer {
    /// `event.batch`.
    pub object: &'static str,
    /// Each event's offset, in the order sent.
    pub offsets: Vec<u64>,
    pub events: Vec<Stored>,
    /// How many were stored before (same id) and not stored again.
    pub duplicates: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    pub id: String,
    pub offset: u64,
    pub duplicate: bool,
}

/// Store a batch of events.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = IngestRequest,
    responses((status = 202, body = IngestAnswer), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn ingest(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<IngestRequest>,
) -> Result<(StatusCode, Json<IngestAnswer>), ApiError> {
    let ctx = auth.tenant(Operation::EventsWrite)?;
    let events =
        check_batch(body.events, s.ingest_limits(), Timestamp::now()).map_err(|e| match e {
            IngestError::TooLarge(ref m) => {
                ApiError::TooLarge { param: Some(e.param()), message: m.clone() }
            }
            IngestError::Invalid { .. } => ApiError::invalid(e.param(), e.to_string()),
        })?;
    match s.event_schemas().check(s.store(), &ctx, &events).await {
        Ok(()) => {}
        Err(SchemaCheck::Refused(e)) => return Err(ApiError::invalid(e.param(), e.to_string())),
        Err(SchemaCheck::Unavailable(e)) => return Err(e.into()),
    }
    tessera_serving::inference::admit_events(&s, &ctx, events.len() as u64).await?;
    let out = s.events().append(ctx.tenant_id(), Topic::Events, events).await.map_err(log_error)?;
    let answer = IngestAnswer {
        object: "event.batch",
        offsets: out.iter().map(|a| a.offset).collect(),
        duplicates: out.iter().filter(|a| a.duplicate).count(),
        events: out
            .into_iter()
            .map(|a| Stored { id: a.id, offset: a.offset, duplicate: a.duplicate })
            .collect(),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

pub(crate) fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::Unavailable(m) => ApiError::Unavailable(m),
        LogError::Invalid(m) => ApiError::invalid("events", m),
        LogError::Internal(m) => ApiError::Internal(m),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// `events` (default) or `predictions`.
    #[param(pattern = "^(events|predictions)$")]
    pub topic: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only events about this entity, as `key:value` (e.g. `customer_id:c1`).
    pub entity: Option<String>,
    /// An offset, or an RFC 3339 time (ingestion time). Reads start at the
    /// beginning of the log by default; the tail starts at its end.
    pub from: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

struct Query {
    topic: Topic,
    filter: Filter,
    from: Option<Position>,
    limit: usize,
}

impl ReadParams {
    fn parse(self) -> Result<Query, ApiError> {
        let topic = match self.topic.as_deref() {
            None => Topic::Events,
            Some(t) => Topic::parse(t).ok_or_else(|| {
                ApiError::invalid("topic", format!("topic {t:?} must be events or predictions"))
            })?,
        };
        let entity = match self.entity {
            None => None,
            Some(e) => match e.split_once(':') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                    Some((k.to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(ApiError::invalid(
                        "entity",
                        format!("entity {e:?} must be key:value"),
                    ));
                }
            },
        };
        let from = match self.from.as_deref() {
            None => None,
            Some(f) => Some(match f.parse::<u64>() {
                Ok(o) => Position::Offset(o),
                Err(_) => Position::Time(Timestamp::parse_rfc3339("from", f).map_err(|_| {
                    ApiError::invalid(
                        "from",
                        format!("from {f:?} must be an offset or an RFC 3339 time"),
                    )
                })?),
            }),
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("limit must be 1-{MAX_PAGE}, got {limit}"),
            ));
        }
        Ok(Query {
            topic,
            filter: Filter { event_type: self.event_type, entity, until: None },
            from,
            limit: limit as usize,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<Record>,
    /// Where the next page starts (`from=`).
    pub next: u64,
    /// This page reached the end of the log.
    pub end: bool,
}

/// Read the caller's events, a page at a time.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(ReadParams),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn read(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Json<EventPage>, ApiError> {
    let ctx = auth.tenant(Operation::EventsRead)?;
    let q = p.parse()?;
    let from = q.from.unwrap_or(Position::Offset(1));
    let page = s
        .events()
        .read(ctx.tenant_id(), q.topic, from, &q.filter, q.limit)
        .await
        .map_err(log_error)?;
    Ok(Json(EventPage { object: "list", data: page.records, next: page.next, end: page.end }))
}

/// Follow the caller's events as they arrive, as server-sent events: each
/// `id:` is the offset, each `data:` an event as `GET /v1/events` shows it.
/// Reconnecting with `Last-Event-ID` resumes after that offset.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(ReadParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this offset")),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, ApiError> {
    let ctx = auth.tenant(Operation::EventsRead)?;
    let q = p.parse()?;
    let log = s.events().clone();
    let tenant = ctx.tenant_id().clone();
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => {
            Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
                ApiError::invalid("Last-Event-ID", "Last-Event-ID must be the offset of an event")
            })?)
        }
    };
    let start = match (resume, q.from) {
        (Some(last), _) => Position::Offset(last + 1),
        (None, Some(from)) => from,
        (None, None) => Position::Offset(log.next_offset(&tenant).await.map_err(log_error)?),
    };
    let tail = Tail {
        log,
        tenant,
        topic: q.topic,
        filter: q.filter,
        at: start,
        queued: VecDeque::new(),
        opened: false,
        failed: false,
    };
    let body = futures_util::stream::unfold(tail, |mut t| async move {
        let chunk = t.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), t))
    });
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok((h, Body::from_stream(body)).into_response())
}

struct Tail {
    log: Arc<dyn EventLog>,
    tenant: TenantId,
    topic: Topic,
    filter: Filter,
    at: Position,
    queued: VecDeque<Record>,
    /// The opening comment went out (so a client knows the tail is live).
    opened: bool,
    failed: bool,
}

impl Tail {
    /// The next piece of the stream: an event, a keep-alive comment, or one
    /// error event before the end.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.failed {
            return None;
        }
        if !self.opened {
            self.opened = true;
            let at = match self.at {
                Position::Offset(o) => o.to_string(),
                Position::Time(t) => t.to_rfc3339(),
            };
            return Some(Bytes::from(format!(": tailing from {at}\n\n")));
        }
        if self.queued.is_empty() {
            match self.log.read(&self.tenant, self.topic, self.at, &self.filter, 100).await {
                Ok(page) => {
                    self.at = Position::Offset(page.next);
                    self.queued.extend(page.records);
                    if self.queued.is_empty() {
                        self.log.wait_for(&self.tenant, page.next, KEEP_ALIVE).await;
                        return Some(Bytes::from_static(b": keep-alive\n\n"));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    tracing::warn!(tenant = %self.tenant, error = %e, "event tail stopped");
                    let msg = serde_json::json!({"error": {"message": "the event log is unavailable; reconnect with Last-Event-ID", "code": "service_unavailable"}});
                    return Some(Bytes::from(format!("event: error\ndata: {msg}\n\n")));
                }
            }
        }
        let r = self.queued.pop_front()?;
        let data = serde_json::to_string(&r).unwrap_or_default();
        Some(Bytes::from(format!("id: {}\ndata: {data}\n\n", r.offset)))
    }
}
