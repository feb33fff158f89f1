//! Linear heads: a tiny native model format for the classification and
//! regression heads tenants train (later issues) over numeric features or
//! over a base model's embeddings of text.
//!
//! The artifact is JSON:
//! `{"format": "tessera.linear.v1", "task": "classification" | "regression",
//!   "weights": [[f32; features]; outputs], "bias": [f32; outputs],
//!   "labels": [string; outputs]?, "base_model": string?}`.
//! Classification answers `probabilities` (softmax, `[n, classes]`) and
//! `label_index` (`[n]`); regression answers `prediction` (`[n, outputs]`).
//!
//! An MLP head is the same with `"format": "tessera.mlp.v1"` and
//! `"hidden": [{"weights": [[f32; in]; units], "bias": [f32; units]}, ..]`:
//! ReLU layers applied in order before the output layer (whose `weights`
//! then read the last hidden layer).

use serde::Deserialize;

use crate::EngineError;
use crate::tensor::{Tensor, TensorData, TensorSpec};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearHead {
    pub format: String,
    pub task: String,
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Embedding model whose vectors are this head's features (text input).
    #[serde(default)]
    pub base_model: Option<String>,
    /// How the feature vector is laid out from a row's columns (heads over
    /// numbers trained by Tessera): `[{"kind": "numeric", "name"} |
    /// {"kind": "categorical", "name", "categories": [..]}]`, one-hot in
    /// category order.
    #[serde(default)]
    pub inputs: Option<serde_json::Value>,
    /// Hidden ReLU layers (`tessera.mlp.v1`), first to last.
    #[serde(default)]
    pub hidden: Vec<Layer>,
}

/// A hidden layer: `weights` is `[units][inputs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// `x` (`[n, inputs]` row-major) through `w` and `b`, ReLU'd if `relu`.
fn dense(x: &[f32], inputs: usize, w: &[Vec<f32>], b: &[f32], relu: bool) -> Vec<f32> {
    let mut z = Vec::with_capacity(x.len() / inputs.max(1) * w.len());
    for row in x.chunks_exact(inputs) {
        for (wr, bias) in w.iter().zip(b) {
            let v = wr.iter().zip(row).map(|(a, b)| a * b).sum::<f32>() + bias;
            z.push(if relu { v.max(0.0) } else { v });
        }
    }
    z
}

impl LinearHead {
    pub fn parse(bytes: &[u8]) -> Result<LinearHead, EngineError> {
        let h: LinearHead = serde_json::from_slice(bytes)
            .map_err(|e| EngineError::InvalidModel(format!("not a tessera.linear.v1 head: {e}")))?;
        match (h.format.as_str(), h.hidden.is_empty()) {
            ("tessera.linear.v1", true) | ("tessera.mlp.v1", false) => {}
            ("tessera.linear.v1", false) => {
                return Err(EngineError::InvalidModel(
                    "a tessera.linear.v1 head has no hidden layers; call it tessera.mlp.v1".into(),
                ));
            }
            ("tessera.mlp.v1", true) => {
                return Err(EngineError::InvalidModel(
                    "a tessera.mlp.v1 head needs at least one hidden layer".into(),
                ));
            }
            _ => {
                return Err(EngineError::InvalidModel(format!(
                    "unknown head format {:?}",
                    h.format
                )));
            }
        }
        let mut width = h.hidden.first().and_then(|l| l.weights.first()).map_or(0, Vec::len);
        for (i, l) in h.hidden.iter().enumerate() {
            let units = l.weights.len();
            if units == 0
                || width == 0
                || l.weights.iter().any(|r| r.len() != width)
                || l.bias.len() != units
            {
                return Err(EngineError::InvalidModel(format!(
                    "hidden layer {i} must be a non-empty [units][{width}] matrix with a bias per unit"
                )));
            }
            if l.weights.iter().flatten().chain(&l.bias).any(|x| !x.is_finite()) {
                return Err(EngineError::InvalidModel(format!(
                    "hidden layer {i}: weights and bias must be finite"
                )));
            }
            width = units;
        }
        if !h.hidden.is_empty() && h.weights.first().map_or(0, Vec::len) != width {
            return Err(EngineError::InvalidModel(format!(
                "the output layer must read the last hidden layer's {width} units"
            )));
        }
        if !matches!(h.task.as_str(), "classification" | "regression") {
            return Err(EngineError::InvalidModel(format!(
                "head task {:?} must be classification or regression",
                h.task
            )));
        }
        let outputs = h.weights.len();
        let features = h.weights.first().map_or(0, Vec::len);
        if outputs == 0 || features == 0 || h.weights.iter().any(|r| r.len() != features) {
            return Err(EngineError::InvalidModel(
                "weights must be a non-empty rectangular [outputs][features] matrix".into(),
            ));
        }
        if h.bias.len() != outputs {
            return Err(EngineError::InvalidModel(format!(
                "bias has {} values for {outputs} outputs",
                h.bias.len()
            )));
        }
        if h.labels.as_ref().is_some_and(|l| l.len() != outputs) {
            return Err(EngineError::InvalidModel(format!(
                "labels must name all {outputs} outputs"
            )));
        }
        if h.weights.iter().flatten().chain(&h.bias).any(|x| !x.is_finite()) {
            return Err(EngineError::InvalidModel("weights and bias must be finite".into()));
        }
        Ok(h)
    }

    pub fn features(&self) -> usize {
        match self.hidden.first() {
            Some(l) => l.weights.first().map_or(0, Vec::len),
            None => self.weights.first().map_or(0, Vec::len),
        }
    }

    pub fn input_spec(&self) -> TensorSpec {
        TensorSpec {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![-1, self.features() as i64],
        }
    }

    pub fn output_specs(&self) -> Vec<TensorSpec> {
        let n = self.weights.len() as i64;
        if self.task == "classification" {
            vec![
                TensorSpec {
                    name: "probabilities".into(),
                    datatype: "FP32".into(),
                    shape: vec![-1, n],
                },
                TensorSpec {
                    name: "label_index".into(),
                    datatype: "INT64".into(),
                    shape: vec![-1],
                },
            ]
        } else {
            vec![TensorSpec {
                name: "prediction".into(),
                datatype: "FP32".into(),
                shape: vec![-1, n],
            }]
        }
    }

    /// Runs the head on `features` (`[n, features]` FP32).
    pub fn run(&self, features: &Tensor) -> Result<Vec<(String, Tensor)>, EngineError> {
        let f = self.features();
        let TensorData::F32(x) = &features.data else {
            return Err(EngineError::InvalidInput("features must be FP32".into()));
        };
        if features.shape.len() != 2 || features.shape[1] != f as i64 {
            return Err(EngineError::InvalidInput(format!(
                "features must have shape [n, {f}], got {:?}",
                features.shape
            )));
        }
        let n = features.rows();
        let k = self.weights.len();
        let mut hidden: Option<Vec<f32>> = None;
        let mut width = f;
        for l in &self.hidden {
            let input = hidden.as_deref().unwrap_or(x);
            hidden = Some(dense(input, width, &l.weights, &l.bias, true));
            width = l.weights.len();
        }
        let mut z = dense(hidden.as_deref().unwrap_or(x), width, &self.weights, &self.bias, false);
        if self.task == "regression" {
            return Ok(vec![("prediction".into(), Tensor::f32(vec![n as i64, k as i64], z)?)]);
        }
        let mut labels = Vec::with_capacity(n);
        for row in z.chunks_exact_mut(k) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
            labels.push(argmax(row) as i64);
        }
        Ok(vec![
            ("probabilities".into(), Tensor::f32(vec![n as i64, k as i64], z)?),
            ("label_index".into(), Tensor::i64(vec![n as i64], labels)?),
        ])
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |acc, (i, v)| if *v > acc.1 { (i, *v) } else { acc })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mlp_head_runs_its_hidden_layers() {
        // relu(x0 - x1), relu(x1 - x0): then a regression summing them = |x0 - x1|.
        let json = r#"{"format": "tessera.mlp.v1", "task": "regression", "hidden": [{"weights": [[1, -1], [-1, 1]], "bias": [0, 0]}], "weights": [[1, 1]], "bias": [0.5]}"#;
        let h = LinearHead::parse(json.as_bytes()).unwrap();
        assert_eq!(h.features(), 2);
        let out = h.run(&Tensor::f32(vec![2, 2], vec![3.0, 1.0, 1.0, 4.0]).unwrap()).unwrap();
        let TensorData::F32(p) = &out[0].1.data else { panic!() };
        assert_eq!(p, &vec![2.5, 3.5]);
        for bad in [
            r#"{"format": "tessera.mlp.v1", "task": "regression", "weights": [[1]], "bias": [0]}"#,
            r#"{"format": "tessera.linear.v1", "task": "regression", "hidden": [{"weights": [[1]], "bias": [0]}], "weights": [[1]], "bias": [0]}"#,
            r#"{"format": "tessera.mlp.v1", "task": "regression", "hidden": [{"weights": [[1, 2]], "bias": [0]}], "weights": [[1, 1]], "bias": [0]}"#,
        ] {
            assert!(LinearHead::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    fn head(task: &str) -> LinearHead {
        let json = format!(
            r#"{{"format": "tessera.linear.v1", "task": "{task}", "weights": [[1, 0], [0, 1], [-1, -1]], "bias": [0, 0, 0.5], "labels": ["a", "b", "c"]}}"#
        );
        LinearHead::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn classification_is_softmax_with_argmax() {
        let h = head("classification");
        let out = h.run(&Tensor::f32(vec![2, 2], vec![2.0, 0.0, -3.0, -3.0]).unwrap()).unwrap();
        let TensorData::F32(p) = &out[0].1.data else { panic!() };
        assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let expected: Vec<f32> = {
            let z = [2.0f32, 0.0, -1.5];
            let m = z.iter().copied().fold(f32::MIN, f32::max);
            let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        for (a, b) in p[..3].iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(out[1].1.data, TensorData::I64(vec![0, 2]));
    }

    #[test]
    fn regression_is_the_affine_map() {
        let h = head("regression");
        let out = h.run(&Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap()).unwrap();
        assert_eq!(out[0].1.data, TensorData::F32(vec![1.0, 2.0, -2.5]));
    }

    #[test]
    fn malformed_heads_and_inputs_are_rejected() {
        assert!(LinearHead::parse(br#"{"format": "tessera.linear.v1", "task": "classification", "weights": [[1, 2], [3]], "bias": [0, 0]}"#).is_err());
        assert!(
            LinearHead::parse(
                br#"{"format": "x", "task": "regression", "weights": [[1]], "bias": [0]}"#
            )
            .is_err()
        );
        assert!(
            head("regression").run(&Tensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0]).unwrap()).is_err()
        );
    }
}
