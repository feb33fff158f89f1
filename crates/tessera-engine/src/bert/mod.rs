//! BERT-family sentence embeddings on ONNX Runtime.

pub mod config;
pub mod export;
pub mod safetensors;

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::EngineError;
pub use config::{BertConfig, Pooling};

/// A tokenized text: ids and its token count.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub ids: Vec<i64>,
}

/// Tokenizes texts the way the model was trained: the file's tokenizer, no
/// padding (the batcher pads to the longest in each batch), truncated at the
/// model's `max_seq_length`.
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: i64,
}

impl TextTokenizer {
    pub fn load(dir: &Path, max_len: usize) -> Result<TextTokenizer, EngineError> {
        let path = dir.join("tokenizer.json");
        let mut inner = Tokenizer::from_file(&path).map_err(|e| {
            EngineError::InvalidModel(format!("cannot load {}: {e}", path.display()))
        })?;
        let pad_id = inner.get_padding().map_or(0, |p| i64::from(p.pad_id));
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| EngineError::InvalidModel(format!("tokenizer truncation: {e}")))?;
        Ok(TextTokenizer { inner, pad_id })
    }

    pub fn tokenize(&self, text: &str) -> Result<Tokens, EngineError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| EngineError::InvalidInput(format!("cannot tokenize: {e}")))?;
        Ok(Tokens { ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect() })
    }

    /// The padding token id from the file (0 for BERT).
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
}

/// A loaded sentence encoder. `embed` runs on the caller's (dedicated) thread.
pub struct BertEncoder {
    session: Session,
    pub dim: usize,
    pad_id: i64,
}

/// Everything needed to run a BERT directory.
pub struct BertModel {
    pub tokenizer: TextTokenizer,
    pub encoder: BertEncoder,
    pub max_len: usize,
}

impl BertModel {
    /// Loads `dir`, exporting its ONNX graph into `export_dir` first if needed.
    /// The ONNX Runtime library must be initialised ([`crate::ort_env::init`]).
    pub fn load(
        env: &ort::environment::Environment,
        dir: &Path,
        export_dir: &Path,
        intra_threads: usize,
    ) -> Result<BertModel, EngineError> {
        let cfg = BertConfig::load(dir)?;
        let max_len = config::max_seq_length(dir, &cfg);
        let tokenizer = TextTokenizer::load(dir, max_len)?;
        let onnx = ensure_export(dir, export_dir, &cfg)?;
        let mut builder = crate::ort_env::session_builder(env, intra_threads)?;
        let session =
            builder.commit_from_file(&onnx).map_err(|e| EngineError::Runtime(e.to_string()))?;
        let pad_id = tokenizer.pad_id();
        Ok(BertModel {
            tokenizer,
            encoder: BertEncoder { session, dim: cfg.hidden_size, pad_id },
            max_len,
        })
    }
}

impl BertEncoder {
    /// Embeds a batch of tokenized texts: pads to the longest, runs the graph,
    /// returns one L2-normalised vector per text.
    pub fn embed(&mut self, batch: &[&Tokens]) -> Result<Vec<Vec<f32>>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let len = batch.iter().map(|t| t.ids.len()).max().unwrap_or(1).max(1);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for t in batch {
            ids.extend_from_slice(&t.ids);
            mask.extend(std::iter::repeat_n(1i64, t.ids.len()));
            let pad = len - t.ids.len();
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            mask.extend(std::iter::repeat_n(0i64, pad));
        }
        let shape = [batch.len() as i64, len as i64];
        let rt = |e: ort::Error| EngineError::Runtime(e.to_string());
        let ids = Tensor::from_array((shape, ids)).map_err(rt)?;
        let mask = Tensor::from_array((shape, mask)).map_err(rt)?;
        let out = self
            .session
            .run(ort::inputs!["input_ids" => ids, "attention_mask" => mask])
            .map_err(rt)?;
        let (_, data) = out["sentence_embedding"].try_extract_tensor::<f32>().map_err(rt)?;
        if data.len() != batch.len() * self.dim {
            return Err(EngineError::Runtime(format!("unexpected output size {}", data.len())));
        }
        Ok(data.chunks_exact(self.dim).map(<[f32]>::to_vec).collect())
    }
}

/// Exports `dir`'s ONNX graph into `export_dir` ahead of the first load (no
/// ONNX Runtime needed); returns its path.
pub fn prepare_export(dir: &Path, export_dir: &Path) -> Result<PathBuf, EngineError> {
    let cfg = BertConfig::load(dir)?;
    ensure_export(dir, export_dir, &cfg)
}

/// The exported graph for `dir`, keyed by the weights' sha256 and the
/// exporter version; written atomically on first use.
fn ensure_export(dir: &Path, export_dir: &Path, cfg: &BertConfig) -> Result<PathBuf, EngineError> {
    let weights = dir.join("model.safetensors");
    let digest = sha256_file(&weights)?;
    let path = export_dir.join(format!("bert-{}-v{}.onnx", &digest[..16], export::EXPORT_VERSION));
    if path.is_file() {
        return Ok(path);
    }
    let bytes = export::export(dir, cfg, config::pooling(dir))?;
    std::fs::create_dir_all(export_dir).map_err(|e| {
        EngineError::InvalidModel(format!("cannot create {}: {e}", export_dir.display()))
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| EngineError::InvalidModel(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), bytes = bytes.len(), "exported BERT graph to ONNX");
    Ok(path)
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, EngineError> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)
        .map_err(|e| EngineError::InvalidModel(format!("cannot open {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| {
            EngineError::InvalidModel(format!("cannot read {}: {e}", path.display()))
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
