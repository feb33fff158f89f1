//! Named tensors for models that take and give numbers (ONNX files, linear
//! heads), with the Open Inference Protocol's datatype names.

use crate::EngineError;

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    pub fn f32(shape: Vec<i64>, data: Vec<f32>) -> Result<Tensor, EngineError> {
        Self::checked(shape, TensorData::F32(data))
    }

    pub fn i64(shape: Vec<i64>, data: Vec<i64>) -> Result<Tensor, EngineError> {
        Self::checked(shape, TensorData::I64(data))
    }

    fn checked(shape: Vec<i64>, data: TensorData) -> Result<Tensor, EngineError> {
        let want =
            shape.iter().try_fold(1i64, |acc, d| if *d >= 0 { acc.checked_mul(*d) } else { None });
        let len = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        };
        match want {
            Some(n) if n as usize == len => Ok(Tensor { shape, data }),
            _ => Err(EngineError::InvalidInput(format!(
                "shape {shape:?} does not match {len} elements"
            ))),
        }
    }

    /// The OIP datatype name.
    pub fn datatype(&self) -> &'static str {
        match self.data {
            TensorData::F32(_) => "FP32",
            TensorData::I64(_) => "INT64",
        }
    }

    /// Rows (the first dimension).
    pub fn rows(&self) -> usize {
        self.shape.first().map_or(1, |r| usize::try_from(*r).unwrap_or(0))
    }
}

/// Declared input or output of a model; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// Joins tensors of the same trailing shape along the first dimension.
pub fn concat_rows(parts: &[&Tensor]) -> Result<Tensor, EngineError> {
    let first =
        parts.first().ok_or_else(|| EngineError::InvalidInput("nothing to batch".into()))?;
    let tail = &first.shape[1.min(first.shape.len())..];
    let mut rows = 0i64;
    for p in parts {
        if p.shape.len() != first.shape.len() || &p.shape[1.min(p.shape.len())..] != tail {
            return Err(EngineError::InvalidInput(
                "tensors with different trailing shapes cannot share a batch".into(),
            ));
        }
        rows += p.shape.first().copied().unwrap_or(1);
    }
    let mut shape = first.shape.clone();
    if let Some(r) = shape.first_mut() {
        *r = rows;
    }
    let data = match &first.data {
        TensorData::F32(_) => TensorData::F32(
            parts
                .iter()
                .flat_map(|p| match &p.data {
                    TensorData::F32(v) => v.clone(),
                    TensorData::I64(_) => Vec::new(),
                })
                .collect(),
        ),
        TensorData::I64(_) => TensorData::I64(
            parts
                .iter()
                .flat_map(|p| match &p.data {
                    TensorData::I64(v) => v.clone(),
                    TensorData::F32(_) => Vec::new(),
                })
                .collect(),
        ),
    };
    Tensor::checked(shape, data)
}

/// Splits a tensor along the first dimension into pieces of `rows` rows.
pub fn split_rows(t: &Tensor, rows: &[usize]) -> Result<Vec<Tensor>, EngineError> {
    let total: usize = rows.iter().sum();
    if t.rows() != total {
        return Err(EngineError::Runtime(format!(
            "output has {} rows, expected {total}",
            t.rows()
        )));
    }
    let per_row: usize = t.shape.iter().skip(1).map(|d| usize::try_from(*d).unwrap_or(0)).product();
    let mut out = Vec::with_capacity(rows.len());
    let mut at = 0;
    for r in rows {
        let mut shape = t.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = *r as i64;
        }
        let range = at * per_row..(at + r) * per_row;
        let data = match &t.data {
            TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
            TensorData::I64(v) => TensorData::I64(v[range].to_vec()),
        };
        out.push(Tensor { shape, data });
        at += r;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_round_trips() {
        let a = Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::f32(vec![2, 2], vec![3.0, 4.0, 5.0, 6.0]).unwrap();
        let c = concat_rows(&[&a, &b]).unwrap();
        assert_eq!(c.shape, vec![3, 2]);
        assert_eq!(split_rows(&c, &[1, 2]).unwrap(), vec![a, b]);
    }

    #[test]
    fn mismatched_shapes_are_rejected() {
        assert!(Tensor::f32(vec![2, 2], vec![1.0]).is_err());
        let a = Tensor::f32(vec![1, 2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0]).unwrap();
        assert!(concat_rows(&[&a, &b]).is_err());
    }
}
