//! The parts of a Hugging Face BERT `config.json` and a sentence-transformers
//! directory that the encoder needs.

use std::path::Path;

use serde::Deserialize;

use crate::EngineError;

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default = "bert")]
    pub model_type: String,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn bert() -> String {
    "bert".into()
}
fn eps() -> f64 {
    1e-12
}
fn gelu() -> String {
    "gelu".into()
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

/// How a directory's model turns token states into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

impl BertConfig {
    pub fn load(dir: &Path) -> Result<BertConfig, EngineError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EngineError::InvalidModel(format!("cannot read {}: {e}", path.display()))
        })?;
        let c: BertConfig = serde_json::from_str(&text).map_err(|e| {
            EngineError::InvalidModel(format!("{} is not a BERT config: {e}", path.display()))
        })?;
        if c.model_type != "bert" {
            return Err(EngineError::InvalidModel(format!(
                "model_type {:?} is not supported; BERT-family encoders with model_type \"bert\" are",
                c.model_type
            )));
        }
        if c.hidden_act != "gelu" {
            return Err(EngineError::InvalidModel(format!(
                "hidden_act {:?} is not supported (gelu is)",
                c.hidden_act
            )));
        }
        if c.position_embedding_type.as_deref().is_some_and(|p| p != "absolute") {
            return Err(EngineError::InvalidModel(
                "only absolute position embeddings are supported".into(),
            ));
        }
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(EngineError::InvalidModel(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        Ok(c)
    }
}

/// `max_seq_length` from `sentence_bert_config.json`, else the position table size.
pub fn max_seq_length(dir: &Path, cfg: &BertConfig) -> usize {
    std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<SentenceBertConfig>(&t).ok())
        .and_then(|c| c.max_seq_length)
        .unwrap_or(cfg.max_position_embeddings)
        .min(cfg.max_position_embeddings)
}

/// The pooling from `1_Pooling/config.json` (mean when absent).
pub fn pooling(dir: &Path) -> Pooling {
    let cfg = std::fs::read_to_string(dir.join("1_Pooling").join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<PoolingConfig>(&t).ok());
    match cfg {
        Some(c) if c.pooling_mode_cls_token && !c.pooling_mode_mean_tokens => Pooling::Cls,
        _ => Pooling::Mean,
    }
}
