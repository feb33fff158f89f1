//! The default model end to end on ONNX Runtime: fetched files, exported graph,
//! tokenizer. Embeddings match sentence-transformers' (fixture computed once by
//! `scripts/reference_embeddings.py`) with cosine >= 0.999, and a batched
//! result equals the single-sentence result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;

use tessera_engine::bert::{BertModel, Tokens};
use tessera_engine::{fetch, ort_env};

static MODEL: Mutex<Option<BertModel>> = Mutex::new(None);

fn with_model<T>(f: impl FnOnce(&mut BertModel) -> T) -> T {
    let mut guard = MODEL.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let cache = fetch::cache_dir();
        fetch::fetch(&cache, &mut |m| eprintln!("fetch: {m}"))
            .expect("the default model can be fetched");
        let env = ort_env::init(&ort_env::library_path(&cache)).expect("onnx runtime loads");
        let model = BertModel::load(env, &fetch::default_model_dir(&cache), &cache.join("onnx"), 1)
            .expect("model loads");
        *guard = Some(model);
    }
    f(guard.as_mut().unwrap())
}

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn embed(model: &mut BertModel, texts: &[String]) -> Vec<Vec<f32>> {
    let tokens: Vec<Tokens> = texts.iter().map(|t| model.tokenizer.tokenize(t).unwrap()).collect();
    let refs: Vec<&Tokens> = tokens.iter().collect();
    model.encoder.embed(&refs).unwrap()
}

#[test]
fn embeddings_match_sentence_transformers() {
    let r = reference();
    with_model(|m| {
        assert_eq!(m.encoder.dim, 384);
        assert_eq!(m.max_len, 256);
        let got = embed(m, &r.sentences);
        for ((s, want), have) in r.sentences.iter().zip(&r.embeddings).zip(&got) {
            let c = cosine(want, have);
            assert!(c >= 0.999, "cosine {c} for {s:?}");
            let norm: f32 = have.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
        }
    });
}

#[test]
fn batched_equals_single() {
    let r = reference();
    with_model(|m| {
        let batched = embed(m, &r.sentences);
        for (s, b) in r.sentences.iter().zip(&batched) {
            let single = embed(m, std::slice::from_ref(s));
            let max_diff =
                single[0].iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(max_diff < 1e-5, "batched and single differ by {max_diff} for {s:?}");
        }
    });
}

#[test]
fn long_inputs_are_truncated_not_rejected() {
    with_model(|m| {
        let long = "word ".repeat(2000);
        let t = m.tokenizer.tokenize(&long).unwrap();
        assert_eq!(t.ids.len(), 256);
        let v = embed(m, &[long]);
        assert_eq!(v[0].len(), 384);
    });
}
