//! The one run loop every protocol shares: the primary target within the
//! deployment's timeout; when it fails in a way another answer may cover
//! ([`ServeError::is_fallbackable`]), the stale cached answer if there is
//! one, then the deployment's fallback models in order. The route's check
//! ([`Chain::accepts`]) vets the primary and every fallback alike. "Model
//! time" is defined here, once: the time spent in the call that answered.

use std::time::Duration;

use tokio::time::Instant;

use super::ServeError;

/// What answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The requested model, as its deployment picked it.
    Primary,
    /// A model from the deployment's fallback list.
    Fallback,
    /// A cached answer: fresh, or stale because the model failed.
    Cache,
}

/// A backend's answer, with the tokens it reports (prompt, completion).
#[derive(Debug)]
pub struct Answer<O> {
    pub output: O,
    pub tokens: Option<(u64, u64)>,
}

impl<O> Answer<O> {
    pub fn new(output: O) -> Self {
        Self { output, tokens: None }
    }
}

/// How a run reaches its targets: resolve a fallback by name, vet a target
/// for the route, call it. The pipeline implements it over the registry and
/// the real backends; tests implement it with fakes.
pub trait Chain: Sync {
    type Target: Send + Sync;
    type Output: Send;

    /// The target's model name, for logs and the timeout message.
    fn name(&self, t: &Self::Target) -> String;
    fn resolve(&self, name: &str) -> impl Future<Output = Result<Self::Target, ServeError>> + Send;
    /// Whether this route may serve the target (task, protocol).
    fn accepts(&self, t: &Self::Target) -> Result<(), ServeError>;
    fn call(
        &self,
        t: &Self::Target,
    ) -> impl Future<Output = Result<Answer<Self::Output>, ServeError>> + Send;
}

/// How a run ended.
#[derive(Debug)]
pub enum Ran<T, O, S> {
    Answered {
        target: T,
        answer: Answer<O>,
        model_time: Duration,
        source: Source,
    },
    /// The model failed and the stale cached answer covers for it.
    Stale(S),
}

/// Runs `call` within `timeout` (when set); running over is
/// [`ServeError::TimedOut`] naming `name`.
pub async fn within<T>(
    timeout: Option<Duration>,
    name: &str,
    call: impl Future<Output = Result<T, ServeError>>,
) -> Result<T, ServeError> {
    match timeout {
        Some(after) => tokio::time::timeout(after, call)
            .await
            .map_err(|_| ServeError::TimedOut { model: name.to_owned(), after })?,
        None => call.await,
    }
}

/// The run loop: see the module docs. When nothing answers, the primary's
/// error is the answer.
pub async fn run<C: Chain, S>(
    chain: &C,
    primary: Result<C::Target, ServeError>,
    fallbacks: &[String],
    timeout: Option<Duration>,
    stale: Option<S>,
) -> Result<Ran<C::Target, C::Output, S>, ServeError> {
    let failure = match primary {
        Ok(t) => {
            chain.accepts(&t)?;
            let name = chain.name(&t);
            let started = Instant::now();
            match within(timeout, &name, chain.call(&t)).await {
                Ok(answer) => {
                    let model_time = started.elapsed();
                    return Ok(Ran::Answered {
                        target: t,
                        answer,
                        model_time,
                        source: Source::Primary,
                    });
                }
                Err(e) if e.is_fallbackable() => {
                    if let Some(s) = stale {
                        tracing::warn!(model = %name, error = %e, "answering from the cache");
                        return Ok(Ran::Stale(s));
                    }
                    e
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.is_fallbackable() => e,
        Err(e) => return Err(e),
    };
    for fallback in fallbacks {
        let candidate = match chain.resolve(fallback).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%fallback, error = %e, "fallback model cannot serve");
                continue;
            }
        };
        if let Err(e) = chain.accepts(&candidate) {
            tracing::warn!(%fallback, error = %e, "fallback model does not fit this route");
            continue;
        }
        let started = Instant::now();
        match within(timeout, fallback, chain.call(&candidate)).await {
            Ok(answer) => {
                let model_time = started.elapsed();
                return Ok(Ran::Answered {
                    target: candidate,
                    answer,
                    model_time,
                    source: Source::Fallback,
                });
            }
            Err(e) => tracing::warn!(%fallback, error = %e, "fallback model failed"),
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A fake model: its task, and how it answers.
    #[derive(Debug, Clone, Copy)]
    enum Fake {
        Ok(u32),
        Down,
        Slow(u64),
        Rejects,
    }

    struct FakeChain {
        models: HashMap<&'static str, (&'static str, Fake)>,
        task: &'static str,
        calls: Mutex<Vec<String>>,
    }

    impl FakeChain {
        fn new(task: &'static str, models: &[(&'static str, &'static str, Fake)]) -> Self {
            Self {
                models: models.iter().map(|(n, t, f)| (*n, (*t, *f))).collect(),
                task,
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Chain for FakeChain {
        type Target = (String, &'static str, Fake);
        type Output = u32;

        fn name(&self, t: &Self::Target) -> String {
            t.0.clone()
        }
        async fn resolve(&self, name: &str) -> Result<Self::Target, ServeError> {
            let (task, f) = self
                .models
                .get(name)
                .ok_or_else(|| ServeError::NotFound(format!("no model {name}")))?;
            Ok((name.to_owned(), task, *f))
        }
        fn accepts(&self, t: &Self::Target) -> Result<(), ServeError> {
            if t.1 == self.task { Ok(()) } else { Err(ServeError::invalid("model", "wrong task")) }
        }
        async fn call(&self, t: &Self::Target) -> Result<Answer<u32>, ServeError> {
            self.calls.lock().unwrap().push(t.0.clone());
            match t.2 {
                Fake::Ok(v) => Ok(Answer::new(v)),
                Fake::Down => Err(ServeError::ModelNotReady("down".into())),
                Fake::Slow(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(Answer::new(0))
                }
                Fake::Rejects => Err(ServeError::invalid("input", "bad input")),
            }
        }
    }

    fn fallbacks(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    async fn answer(
        chain: &FakeChain,
        primary: &str,
        fb: &[&str],
        timeout: Option<u64>,
        stale: Option<u32>,
    ) -> Result<(String, u32, Source), ServeError> {
        let p = chain.resolve(primary).await;
        let t = timeout.map(Duration::from_millis);
        match run(chain, p, &fallbacks(fb), t, stale).await? {
            Ran::Answered { target, answer, source, .. } => Ok((target.0, answer.output, source)),
            Ran::Stale(v) => Ok(("stale".into(), v, Source::Cache)),
        }
    }

    #[tokio::test]
    async fn the_primary_answers_and_no_fallback_is_tried() {
        let c = FakeChain::new("embedding", &[("a", "embedding", Fake::Ok(1))]);
        assert_eq!(
            answer(&c, "a", &["b"], None, Some(9)).await.unwrap(),
            ("a".into(), 1, Source::Primary)
        );
        assert_eq!(c.calls(), ["a"]);
    }

    #[tokio::test]
    async fn fallbacks_are_tried_in_order_and_the_first_that_answers_wins() {
        let c = FakeChain::new(
            "embedding",
            &[
                ("a", "embedding", Fake::Down),
                ("b", "embedding", Fake::Down),
                ("c", "embedding", Fake::Ok(3)),
                ("d", "embedding", Fake::Ok(4)),
            ],
        );
        let got = answer(&c, "a", &["missing", "b", "c", "d"], None, None).await.unwrap();
        assert_eq!(got, ("c".into(), 3, Source::Fallback));
        assert_eq!(c.calls(), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_fallback_of_another_task_is_never_called() {
        let c = FakeChain::new(
            "classification",
            &[
                ("head", "classification", Fake::Down),
                ("embedder", "embedding", Fake::Ok(7)),
                ("head2", "classification", Fake::Ok(8)),
            ],
        );
        let got = answer(&c, "head", &["embedder", "head2"], None, None).await.unwrap();
        assert_eq!(got, ("head2".into(), 8, Source::Fallback));
        assert_eq!(c.calls(), ["head", "head2"]);
    }

    #[tokio::test]
    async fn a_primary_of_another_task_is_refused_before_it_runs() {
        let c =
            FakeChain::new("chat", &[("e", "embedding", Fake::Ok(1)), ("f", "chat", Fake::Ok(2))]);
        let err = answer(&c, "e", &["f"], None, None).await.unwrap_err();
        assert!(matches!(err, ServeError::Invalid { .. }));
        assert!(c.calls().is_empty());
    }

    #[tokio::test]
    async fn the_stale_answer_comes_before_the_fallbacks() {
        let c = FakeChain::new("e", &[("a", "e", Fake::Down), ("b", "e", Fake::Ok(2))]);
        assert_eq!(
            answer(&c, "a", &["b"], None, Some(9)).await.unwrap(),
            ("stale".into(), 9, Source::Cache)
        );
        assert_eq!(c.calls(), ["a"]);
    }

    #[tokio::test]
    async fn a_client_error_neither_falls_back_nor_serves_stale() {
        let c = FakeChain::new("e", &[("a", "e", Fake::Rejects), ("b", "e", Fake::Ok(2))]);
        let err = answer(&c, "a", &["b"], None, Some(9)).await.unwrap_err();
        assert!(matches!(err, ServeError::Invalid { .. }));
        assert_eq!(c.calls(), ["a"]);
    }

    #[tokio::test]
    async fn when_nothing_answers_the_primary_error_is_returned() {
        let c = FakeChain::new("e", &[("a", "e", Fake::Down), ("b", "e", Fake::Down)]);
        let err = answer(&c, "a", &["b"], None, None).await.unwrap_err();
        assert!(matches!(err, ServeError::ModelNotReady(m) if m == "down"));
    }

    #[tokio::test]
    async fn a_primary_that_cannot_be_resolved_still_has_its_fallbacks() {
        let c = FakeChain::new("e", &[("b", "e", Fake::Ok(2))]);
        let primary = Err(ServeError::ModelNotReady("loading".into()));
        let ran = run(&c, primary, &fallbacks(&["b"]), None, None::<u32>).await.unwrap();
        assert!(matches!(ran, Ran::Answered { source: Source::Fallback, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_primary_times_out_into_the_fallback_and_model_time_is_the_answering_call() {
        let c =
            FakeChain::new("e", &[("slow", "e", Fake::Slow(500)), ("quick", "e", Fake::Slow(20))]);
        let p = c.resolve("slow").await;
        let started = Instant::now();
        let ran = run(&c, p, &fallbacks(&["quick"]), Some(Duration::from_millis(100)), None::<u32>)
            .await
            .unwrap();
        let Ran::Answered { target, model_time, source, .. } = ran else { panic!("stale") };
        assert_eq!((target.0.as_str(), source), ("quick", Source::Fallback));
        assert_eq!(model_time, Duration::from_millis(20));
        assert_eq!(started.elapsed(), Duration::from_millis(120));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_names_the_model_and_its_limit() {
        let c = FakeChain::new("e", &[("slow", "e", Fake::Slow(500))]);
        let p = c.resolve("slow").await;
        let err = run(&c, p, &[], Some(Duration::from_millis(100)), None::<u32>).await.unwrap_err();
        assert_eq!(err.to_string(), "model slow took longer than 100 ms");
    }
}
