//! Users' ONNX models (for example scikit-learn exports via skl2onnx, or small
//! PyTorch exports) on ONNX Runtime: inputs and outputs read from the file,
//! FP32 and INT64 tensors in and out.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::EngineError;
use crate::tensor::{Tensor, TensorData, TensorSpec};

pub struct OnnxModel {
    session: Session,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

fn spec(name: &str, ty: &ValueType) -> Option<TensorSpec> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => {
            let datatype = match ty {
                TensorElementType::Float32 => "FP32",
                TensorElementType::Int64 => "INT64",
                _ => return None,
            };
            Some(TensorSpec {
                name: name.to_owned(),
                datatype: datatype.into(),
                shape: shape.iter().copied().collect(),
            })
        }
        _ => None,
    }
}

impl OnnxModel {
    /// Loads an ONNX file from memory. Only FP32/INT64 tensor inputs are
    /// accepted; outputs of other kinds (e.g. ZipMap's maps) are left out.
    pub fn load(
        env: &ort::environment::Environment,
        bytes: &[u8],
        intra_threads: usize,
    ) -> Result<OnnxModel, EngineError> {
        let mut builder = crate::ort_env::session_builder(env, intra_threads)?;
        let session = builder
            .commit_from_memory(bytes)
            .map_err(|e| EngineError::InvalidModel(format!("not a loadable ONNX model: {e}")))?;
        let mut inputs = Vec::new();
        for i in session.inputs() {
            inputs.push(spec(i.name(), i.dtype()).ok_or_else(|| {
                EngineError::InvalidModel(format!(
                    "input {:?} is not an FP32 or INT64 tensor",
                    i.name()
                ))
            })?);
        }
        let outputs = session.outputs().iter().filter_map(|o| spec(o.name(), o.dtype())).collect();
        Ok(OnnxModel { session, inputs, outputs })
    }

    /// Runs the model on named inputs; returns every tensor output.
    pub fn run(
        &mut self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, EngineError> {
        let rt = |e: ort::Error| EngineError::Runtime(e.to_string());
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            let v = match t.data {
                TensorData::F32(d) => {
                    ort::value::Tensor::from_array((t.shape, d)).map_err(rt)?.into_dyn().into()
                }
                TensorData::I64(d) => {
                    ort::value::Tensor::from_array((t.shape, d)).map_err(rt)?.into_dyn().into()
                }
            };
            values.push((name, v));
        }
        let out = self.session.run(values).map_err(|e| EngineError::InvalidInput(e.to_string()))?;
        let mut result = Vec::new();
        for spec in &self.outputs {
            let value = &out[spec.name.as_str()];
            let t = match spec.datatype.as_str() {
                "FP32" => {
                    let (shape, data) = value.try_extract_tensor::<f32>().map_err(rt)?;
                    Tensor::f32(shape.iter().copied().collect(), data.to_vec())?
                }
                _ => {
                    let (shape, data) = value.try_extract_tensor::<i64>().map_err(rt)?;
                    Tensor::i64(shape.iter().copied().collect(), data.to_vec())?
                }
            };
            result.push((spec.name.clone(), t));
        }
        Ok(result)
    }
}
