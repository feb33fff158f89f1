//! Tessera's inference engine. Runtimes are synchronous and run on their own
//! threads; the async side hands requests to a per-model batcher over a
//! bounded queue and awaits the answer on a oneshot channel.
//!
//! - [`bert`]: BERT-family sentence embeddings. The model directory
//!   (`config.json`, `tokenizer.json`, `model.safetensors`) is exported once to
//!   an ONNX graph ([`bert::export`]) and run by ONNX Runtime.
//! - [`batcher`]: dynamic batching with a size limit, a token budget and an
//!   optional queue delay; a full queue is [`EngineError::Overloaded`].
//! - [`fetch`]: obtains the default model and the ONNX Runtime library.

pub mod batcher;
pub mod bert;
mod error;
pub mod fetch;
pub mod linear;
pub mod onnx;
pub mod onnx_model;
pub mod ort_env;
pub mod pool;
pub mod tensor;

pub use error::EngineError;

/// Checks that `bytes` can be a model for `runtime` (`onnx`: an ONNX model
/// with a graph; `linear`: a `tessera.linear.v1` head), so a broken upload is
/// refused when it is made rather than failing at its first load. Other
/// runtimes are not checked here.
pub fn check_artifact(runtime: &str, bytes: &[u8]) -> Result<(), EngineError> {
    match runtime {
        "onnx" => {
            use prost::Message as _;
            let model = onnx::proto::ModelProto::decode(bytes)
                .map_err(|e| EngineError::InvalidModel(format!("not an ONNX model: {e}")))?;
            match model.graph {
                Some(g) if !g.output.is_empty() => Ok(()),
                _ => Err(EngineError::InvalidModel(
                    "not an ONNX model: it has no graph outputs".into(),
                )),
            }
        }
        "linear" => linear::LinearHead::parse(bytes).map(|_| ()),
        _ => Ok(()),
    }
}
