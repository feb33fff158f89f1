//! The inference pipeline every protocol runs, in one place:
//!
//! [`Call::open`]: resolve the model for the caller (once) -> admission
//! (limits and budget, one atomic step) -> the primary target. The adapter
//! then parses its body into a [`Job`] and calls [`Call::serve`]: cache
//! lookup (a fresh hit answers) -> the run loop (`run.rs`: timeout,
//! breaker, stale cache, fallbacks, the job's check on every candidate) ->
//! store the primary's answer -> shadows (`shadow.rs`) -> settle tokens.
//! The result is a typed [`Outcome`]; the edge renders it and records usage
//! from its [`Meta`], never from response headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ServeError;
use super::admission::admit;
use super::features::read_inputs;
use super::resolve::{Caller, Resolution, Target, Use, VersionRef, resolve_named, target};
use super::run::{Answer, Chain, Ran, Source, run};
use super::shadow::{Primary, mirror};
use crate::Services;
use crate::cache::{CacheStatus, Entry, Policy};
use crate::limits::Admitted;
use crate::predictions::{Prediction, RecordInput, sampled};
use tessera_core::model::Model;

/// One protocol operation on the pipeline: how to vet a target, run on it,
/// and cache and compare its answers.
pub trait Job: Send + Sync + 'static {
    type Output: Send + 'static;

    /// The route, as the cache key names it.
    fn cache_route(&self) -> &'static str;

    /// Whether this route may serve a model of this task and runtime: checked
    /// on the registry entry before anything is loaded, for the primary and
    /// every fallback.
    fn accepts_model(&self, m: &Model) -> Result<(), ServeError>;

    /// Whether this route may serve the loaded target: by default what
    /// [`Job::accepts_model`] says of its model.
    fn accepts(&self, t: &Target) -> Result<(), ServeError> {
        self.accepts_model(&t.model)
    }

    /// The entity rows the request names instead of its inputs (join key
    /// columns); the version's bound features are read as its input.
    fn entity(&self) -> Option<&serde_json::Map<String, Value>> {
        None
    }

    /// Whether the route's answers can ever come from the response cache;
    /// `false` skips the cache (and its counters) altogether.
    fn uses_cache(&self) -> bool {
        false
    }

    fn run(
        &self,
        s: &Services,
        t: &Target,
    ) -> impl Future<Output = Result<Answer<Self::Output>, ServeError>> + Send;

    /// The request as the cache keys it, when `t`'s answers may be cached on
    /// this route; `None`: not cached.
    fn cache_request(&self, _t: &Target) -> Option<Value> {
        None
    }

    /// The answer as the cache stores it.
    fn cache_body(&self, _out: &Self::Output) -> Option<String> {
        None
    }

    /// The part of an answer a shadow's is compared on.
    fn compared(&self, _out: &Self::Output) -> Option<Value> {
        None
    }

    /// The request as its prediction record keeps it: a digest of the input
    /// and, on text routes, the text (made only when the tenant keeps it).
    fn record_input(&self, _keep_text: bool) -> RecordInput {
        RecordInput::default()
    }

    /// The answer in bounded form for its prediction record: label and
    /// score, top-k, vector dimensions.
    fn summary(&self, _out: &Self::Output) -> Value {
        Value::Null
    }

    /// Runs the request on a shadow version; answers the compared part and
    /// the summary its record keeps.
    fn shadow(
        &self,
        s: &Services,
        t: &Target,
    ) -> impl Future<Output = Result<(Option<Value>, Value), ServeError>> + Send {
        async move {
            let answer = self.run(s, t).await?;
            Ok((self.compared(&answer.output), self.summary(&answer.output)))
        }
    }
}

/// An answer: the job's own output, or a cached answer as stored.
pub enum Reply<O> {
    Fresh(O),
    Cached(Arc<Entry>),
}

/// What the edge needs to render and meter an answer.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The model that answered (a fallback's name after a fallback).
    pub model: String,
    /// `tenant`, `segment` or `platform`.
    pub tier: String,
    /// The version that answered.
    pub version: VersionRef,
    pub source: Source,
    pub cache: CacheStatus,
    /// Time in the backend that answered; zero for a cached answer.
    pub model_time: Duration,
    /// Tokens the backend reported (prompt, completion).
    pub tokens: Option<(u64, u64)>,
    /// Unique and time-sortable; the usage record keeps it.
    pub prediction_id: String,
}

pub struct Outcome<O> {
    pub reply: Reply<O>,
    pub meta: Meta,
    /// The admission, settled to the reported tokens when they are known;
    /// dropping it releases the request's concurrency slots.
    pub admitted: Admitted,
}

/// A request resolved and admitted, waiting for its job.
pub struct Call {
    s: Services,
    caller: Caller,
    res: Resolution,
    pin: Option<String>,
    admitted: Admitted,
    opened: Instant,
}

impl Call {
    /// Resolves `name` for the caller and admits the request (estimated to
    /// use `estimate` tokens: prompt, completion); `pin` is a version the
    /// caller named.
    pub async fn open(
        s: &Services,
        caller: Caller,
        name: &str,
        pin: Option<&str>,
        estimate: (u64, u64),
    ) -> Result<Call, ServeError> {
        let opened = Instant::now();
        let (res, named) = resolve_named(s, &caller, name).await?;
        let pin = match (pin, named) {
            (Some(p), Some(n)) if p != n => {
                return Err(ServeError::invalid(
                    "model",
                    format!("{name:?} names version {n}, and the request names version {p}"),
                ));
            }
            (Some(p), _) => Some(p.to_owned()),
            (None, n) => n,
        };
        let admitted = admit(s, &caller, &res, res.model().name.as_str(), estimate).await?;
        Ok(Call { s: s.clone(), caller, res, pin, admitted, opened })
    }

    /// The requested model as resolved.
    pub fn resolution(&self) -> &Resolution {
        &self.res
    }

    /// Runs `job`: the cache, the run loop, shadows, settlement.
    pub async fn serve<J: Job>(
        self,
        job: J,
        policy: Policy,
    ) -> Result<Outcome<J::Output>, ServeError> {
        let Call { s, caller, res, pin, mut admitted, opened } = self;
        let job = Arc::new(job);
        // The route's check before anything loads; then the primary target
        // (the version that answers). A primary that cannot serve now is
        // kept as an error: its fallbacks may still answer.
        job.accepts_model(res.model())?;
        let primary = match target(&s, &caller, &res, pin.as_deref(), Use::Live).await {
            Ok(mut t) => {
                job.accepts(&t)?;
                read_inputs(&s, &caller, &*job, &mut t).await.map(|()| t)
            }
            Err(e) => Err(e),
        };
        let primary = match primary {
            Err(e) if !e.is_fallbackable() => return Err(e),
            p => p,
        };
        let pinned = pin.is_some();
        let slot = CacheSlot::lookup(&s, &caller, &primary, &*job, policy).await;
        if let Some(hit) = slot.hit(&s) {
            admitted.settle(0, 0);
            let out = cached(hit, CacheStatus::Hit, admitted);
            record(&s, &caller, &res, &*job, &out.meta, entry_summary(&out), opened);
            return Ok(out);
        }
        // The version asked to answer, to record its failure if it fails.
        let asked = primary.as_ref().ok().map(|t| Asked {
            model: t.model.name.clone(),
            tier: t.model.owner.as_str(),
            version: t.version.clone(),
        });
        let deployment = res.deployment.clone();
        let fallbacks = deployment.as_ref().map_or(&[][..], |d| d.fallbacks.as_slice());
        let timeout = deployment.as_ref().and_then(|d| d.timeout_ms).map(Duration::from_millis);
        let chain = Pipeline { s: &s, caller: &caller, job: &*job };
        let ran = match run(&chain, primary, fallbacks, timeout, slot.entry.clone()).await {
            Ok(ran) => ran,
            Err(e) => {
                if e.is_fallbackable() {
                    record_failure(&s, &caller, &res, &*job, asked.as_ref(), &e, opened);
                }
                return Err(e);
            }
        };
        if matches!(ran, Ran::Stale(_) | Ran::Answered { source: Source::Fallback, .. }) {
            let e = ServeError::Unavailable("the primary failed; another answer covered".into());
            record_failure(&s, &caller, &res, &*job, asked.as_ref(), &e, opened);
        }
        let (t, answer, model_time, source) = match ran {
            Ran::Stale(entry) => {
                s.cache().served_stale();
                admitted.settle(0, 0);
                let out = cached(entry, CacheStatus::Stale, admitted);
                record(&s, &caller, &res, &*job, &out.meta, entry_summary(&out), opened);
                return Ok(out);
            }
            Ran::Answered { target, answer, model_time, source } => {
                (target, answer, model_time, source)
            }
        };
        // Made once, for the record and the cache entry (a hit's record).
        let summary = job.summary(&answer.output);
        let cache = match source {
            Source::Primary if slot.key.is_some() => {
                slot.store(&s, &t, job.cache_body(&answer.output), summary.clone())
            }
            Source::Primary => CacheStatus::Bypass,
            // Looked up and not found; a fallback's answer is not stored.
            Source::Fallback | Source::Cache if slot.key.is_some() => CacheStatus::Miss,
            Source::Fallback | Source::Cache => CacheStatus::Bypass,
        };
        let prediction_id = tessera_core::ids::new_prediction_id();
        if source == Source::Primary && !pinned {
            shadow(&s, &caller, &res, &t, &job, &answer.output, model_time, &prediction_id);
        }
        if let Some((p, c)) = answer.tokens {
            admitted.settle(p, c);
            if t.is_remote() {
                s.upstreams().stats.tokens(p, c);
            }
        }
        let meta = Meta {
            model: t.model.name.clone(),
            tier: t.model.owner.as_str().to_owned(),
            version: t.version.clone(),
            source,
            cache,
            model_time,
            tokens: answer.tokens,
            prediction_id,
        };
        record(&s, &caller, &res, &*job, &meta, Some(&summary), opened);
        Ok(Outcome { reply: Reply::Fresh(answer.output), meta, admitted })
    }
}

/// Queues the answer's prediction record when the tenant's sample takes it
/// (never waits: a full queue drops it and counts it).
fn record<J: Job>(
    s: &Services,
    caller: &Caller,
    res: &Resolution,
    job: &J,
    meta: &Meta,
    summary: Option<&Value>,
    opened: Instant,
) {
    let tenant = &res.tenant.tenant;
    if !sampled(&meta.prediction_id, tenant.prediction_sample_rate) {
        return;
    }
    let input = job.record_input(tenant.store_inputs);
    let p = Prediction {
        id: &meta.prediction_id,
        model: &meta.model,
        version: &meta.version,
        tier: &meta.tier,
        route: job.cache_route(),
        user: named_user(caller),
        entity: job.entity(),
        input_digest: input.digest,
        input: if tenant.store_inputs { input.text.as_deref() } else { None },
        rows: if tenant.store_inputs { input.rows.as_ref() } else { None },
        output: summary,
        latency: opened.elapsed(),
        model_time: meta.model_time,
        cache: meta.cache.as_str(),
        at: tessera_core::time::Timestamp::now(),
        shadow_of: None,
        same_output: None,
        error: None,
    };
    s.predictions().record(caller.ctx.tenant_id(), &p);
}

/// The version a request asked to answer, before the run loop.
struct Asked {
    model: String,
    tier: &'static str,
    version: VersionRef,
}

/// Records that the version asked to answer failed (a rollout's error
/// rate counts these), when the tenant's sample takes the request.
fn record_failure<J: Job>(
    s: &Services,
    caller: &Caller,
    res: &Resolution,
    job: &J,
    asked: Option<&Asked>,
    error: &ServeError,
    opened: Instant,
) {
    static NONE: Value = Value::Null;
    let Some(asked) = asked else { return };
    let id = tessera_core::ids::new_prediction_id();
    if !sampled(&id, res.tenant.tenant.prediction_sample_rate) {
        return;
    }
    let mut message = error.to_string();
    message.truncate(message.floor_char_boundary(200));
    let p = Prediction {
        id: &id,
        model: &asked.model,
        version: &asked.version,
        tier: asked.tier,
        route: job.cache_route(),
        user: named_user(caller),
        entity: job.entity(),
        input_digest: None,
        input: None,
        rows: None,
        output: Some(&NONE),
        latency: opened.elapsed(),
        model_time: Duration::ZERO,
        cache: "bypass",
        at: tessera_core::time::Timestamp::now(),
        shadow_of: None,
        same_output: None,
        error: Some(&message),
    };
    s.predictions().record(caller.ctx.tenant_id(), &p);
}

/// The end user the caller named, for the record's `user` key (a
/// subject's deletion finds its records by it); `None` when the request
/// named none and the sticky split used its request id instead.
fn named_user(caller: &Caller) -> Option<&str> {
    (!caller.user.is_empty() && caller.user != caller.request_id).then_some(caller.user.as_str())
}

/// A cached answer's summary as its record keeps it (`None`: not known).
fn entry_summary<O>(out: &Outcome<O>) -> Option<&Value> {
    match &out.reply {
        Reply::Cached(e) if !e.summary.is_null() => Some(&e.summary),
        _ => None,
    }
}

fn cached<O>(entry: Arc<Entry>, cache: CacheStatus, admitted: Admitted) -> Outcome<O> {
    let version = match entry.version.rsplit_once('@') {
        Some((m, v)) => VersionRef { model: m.to_owned(), version: v.to_owned() },
        None => VersionRef { model: entry.model.clone(), version: entry.version.clone() },
    };
    let meta = Meta {
        model: entry.model.clone(),
        tier: entry.tier.clone(),
        version,
        source: Source::Cache,
        cache,
        model_time: Duration::ZERO,
        tokens: None,
        prediction_id: tessera_core::ids::new_prediction_id(),
    };
    Outcome { reply: Reply::Cached(entry), meta, admitted }
}

/// Mirrors the request to the deployment's shadow versions of the model
/// that answered (local embedding models have one version: no shadows).
/// Each shadow's answer (or failure) is recorded, tier `shadow`, keyed by
/// the primary's prediction id, when the primary's record is sampled.
#[allow(clippy::too_many_arguments)]
fn shadow<J: Job>(
    s: &Services,
    caller: &Caller,
    res: &Resolution,
    t: &Target,
    job: &Arc<J>,
    output: &J::Output,
    time: Duration,
    prediction_id: &str,
) {
    let Some(d) = &t.deployment else { return };
    if matches!(t.backend, super::resolve::Backend::Embedding(_)) {
        return;
    }
    let versions = d.shadows_for(&t.model.id, &caller.user);
    if versions.is_empty() {
        return;
    }
    let compared = job.compared(output);
    let primary = Primary { model: t.model.name.clone(), output: compared.clone(), time };
    let keep = sampled(prediction_id, res.tenant.tenant.prediction_sample_rate);
    let of = Arc::new(ShadowOf {
        prediction_id: prediction_id.to_owned(),
        model: t.model.name.clone(),
        compared,
        keep,
    });
    let (s2, caller, res, job) = (s.clone(), caller.clone(), res.clone(), job.clone());
    mirror(s.shadows(), versions, primary, move |version| {
        let (s, caller, res, job, of) =
            (s2.clone(), caller.clone(), res.clone(), job.clone(), of.clone());
        async move {
            let started = Instant::now();
            let answer = async {
                let mut t =
                    target(&s, &caller, &res, Some(&version.to_string()), Use::Evaluate).await?;
                read_inputs(&s, &caller, &*job, &mut t).await?;
                let answered = t.version.clone();
                job.shadow(&s, &t).await.map(|a| (answered, a))
            }
            .await;
            if of.keep {
                record_shadow(&s, &caller, &*job, &of, version, &answer, started.elapsed());
            }
            answer.map(|(_, (compared, _))| compared)
        }
    });
}

/// What a shadow's record says of the answer it mirrored.
struct ShadowOf {
    prediction_id: String,
    model: String,
    compared: Option<Value>,
    /// The primary's record was sampled: the shadow's is kept too.
    keep: bool,
}

type ShadowAnswer = Result<(VersionRef, (Option<Value>, Value)), ServeError>;

fn record_shadow<J: Job>(
    s: &Services,
    caller: &Caller,
    job: &J,
    of: &ShadowOf,
    version: i64,
    answer: &ShadowAnswer,
    latency: Duration,
) {
    let id = tessera_core::ids::new_prediction_id();
    let failed = VersionRef { model: of.model.clone(), version: version.to_string() };
    let mut message = None;
    static NONE: Value = Value::Null;
    let (version, output, same) = match answer {
        Ok((v, (compared, summary))) => {
            let same = match (&of.compared, compared) {
                (Some(p), Some(o)) => Some(p == o),
                _ => None,
            };
            (v, Some(summary), same)
        }
        Err(e) => {
            let mut m = e.to_string();
            m.truncate(m.floor_char_boundary(200));
            message = Some(m);
            (&failed, Some(&NONE), None)
        }
    };
    let p = Prediction {
        id: &id,
        model: &of.model,
        version,
        tier: "shadow",
        route: job.cache_route(),
        user: named_user(caller),
        entity: job.entity(),
        input_digest: None,
        input: None,
        rows: None,
        output,
        latency,
        model_time: latency,
        cache: "bypass",
        at: tessera_core::time::Timestamp::now(),
        shadow_of: Some(&of.prediction_id),
        same_output: same,
        error: message.as_deref(),
    };
    s.predictions().record(caller.ctx.tenant_id(), &p);
}

/// The run loop's view of the pipeline: fallbacks resolve for the same
/// caller, the job vets and runs them.
struct Pipeline<'a, J> {
    s: &'a Services,
    caller: &'a Caller,
    job: &'a J,
}

impl<J: Job> Chain for Pipeline<'_, J> {
    type Target = Target;
    type Output = J::Output;

    fn name(&self, t: &Target) -> String {
        t.model.name.clone()
    }

    async fn resolve(&self, name: &str) -> Result<Target, ServeError> {
        let (res, pin) = resolve_named(self.s, self.caller, name).await?;
        // A fallback the route cannot serve is never loaded.
        self.job.accepts_model(res.model())?;
        let mut t = target(self.s, self.caller, &res, pin.as_deref(), Use::Live).await?;
        read_inputs(self.s, self.caller, self.job, &mut t).await?;
        Ok(t)
    }

    fn accepts(&self, t: &Target) -> Result<(), ServeError> {
        self.job.accepts(t)
    }

    async fn call(&self, t: &Target) -> Result<Answer<J::Output>, ServeError> {
        self.job.run(self.s, t).await
    }
}

/// A request's place in the response cache.
struct CacheSlot {
    /// `None`: not cached (bypassed, disabled, or no primary to key by).
    key: Option<String>,
    ttl_ms: u64,
    /// What the cache holds, fresh or within its grace period.
    entry: Option<Arc<Entry>>,
    policy: Policy,
}

impl CacheSlot {
    async fn lookup<J: Job>(
        s: &Services,
        caller: &Caller,
        primary: &Result<Target, ServeError>,
        job: &J,
        policy: Policy,
    ) -> CacheSlot {
        let none = CacheSlot { key: None, ttl_ms: 0, entry: None, policy };
        if !job.uses_cache() {
            return none;
        }
        let Ok(t) = primary else { return none };
        let ttl_ms = t
            .deployment
            .as_ref()
            .and_then(|d| d.cache_ttl_ms)
            .unwrap_or(crate::cache::DEFAULT_TTL.as_millis() as u64);
        let request = match job.cache_request(t) {
            Some(r) if policy != Policy::Bypass && ttl_ms > 0 => r,
            _ => {
                s.cache().bypassed();
                return none;
            }
        };
        // The caller's tenant, not the model's owner: a shared model's
        // answers are still kept per tenant.
        let key = s
            .cache()
            .key(
                caller.ctx.tenant_id().as_str(),
                &t.model.id,
                &t.version.to_string(),
                job.cache_route(),
                &request,
            )
            .await;
        let entry = s.cache().get(&key).await;
        CacheSlot { key: Some(key), ttl_ms, entry, policy }
    }

    /// A fresh entry the request may be answered with.
    fn hit(&self, s: &Services) -> Option<Arc<Entry>> {
        if self.policy != Policy::Use {
            return None;
        }
        self.entry.clone().filter(|e| s.cache().is_fresh(e))
    }

    /// Stores the primary's answer and counts a miss; the answer's status.
    fn store(&self, s: &Services, t: &Target, body: Option<String>, summary: Value) -> CacheStatus {
        let (Some(key), Some(body)) = (&self.key, body) else { return CacheStatus::Bypass };
        s.cache().miss();
        s.cache().put(
            key.clone(),
            Entry {
                body,
                model: t.model.name.clone(),
                tier: t.model.owner.as_str().to_owned(),
                version: t.version.to_string(),
                stored_ms: s.cache().now_ms(),
                ttl_ms: self.ttl_ms,
                summary,
            },
        );
        CacheStatus::Miss
    }
}
