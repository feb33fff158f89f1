//! Decoding Open Inference Protocol tensors: the Triton binary extension's
//! body split, BYTES inputs as text, numeric inputs (JSON or binary) as
//! tensors, and which outputs a client wants in binary.

use axum::http::HeaderMap;
use serde_json::Value;
use tessera_engine::tensor::{Tensor, TensorData};

use super::inference::flatten;
use super::oip::{BINARY_HEADER, InferInput, InferRequest};
use tessera_serving::inference::MAX_INPUTS;
use tessera_serving::inference::ServeError;

/// Splits a Triton binary-extension body into its JSON header and the tensor bytes.
pub(super) fn split_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), ServeError> {
    match headers.get(BINARY_HEADER) {
        None => Ok((body, &[])),
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n <= body.len())
                .ok_or_else(|| {
                    ServeError::invalid(
                        "Inference-Header-Content-Length",
                        "invalid Inference-Header-Content-Length",
                    )
                })?;
            Ok(body.split_at(n))
        }
    }
}

/// The strings of a BYTES input, from JSON data or binary (u32 LE length + bytes each).
pub(super) fn text_input(
    input: &InferInput,
    binary: &mut &[u8],
) -> Result<Vec<String>, ServeError> {
    if input.datatype != "BYTES" {
        return Err(ServeError::invalid(
            "inputs",
            format!(
                "input {:?} must be BYTES for a text model, got {}",
                input.name, input.datatype
            ),
        ));
    }
    let count: i64 = match input.shape.as_slice() {
        [n] | [n, 1] => *n,
        _ => -1,
    };
    let valid_shape = count >= 0;
    if !valid_shape {
        return Err(ServeError::invalid(
            "inputs",
            format!("input {:?} must have shape [N] or [N, 1], got {:?}", input.name, input.shape),
        ));
    }
    if count > MAX_INPUTS as i64 {
        return Err(ServeError::invalid(
            "inputs",
            format!("at most {MAX_INPUTS} texts per request, got {count}"),
        ));
    }
    let binary_size =
        input.parameters.as_ref().and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
    let texts = match (binary_size, &input.data) {
        (Some(size), _) => {
            let size = usize::try_from(size)
                .map_err(|_| ServeError::invalid("inputs", "binary_data_size too large"))?;
            if size > binary.len() {
                return Err(ServeError::invalid(
                    "inputs",
                    "binary data is shorter than binary_data_size",
                ));
            }
            let (mut mine, rest) = binary.split_at(size);
            *binary = rest;
            let mut out = Vec::new();
            while !mine.is_empty() {
                let len_bytes: [u8; 4] = mine
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ServeError::invalid("inputs", "truncated BYTES element"))?;
                let len = u32::from_le_bytes(len_bytes) as usize;
                let s = mine
                    .get(4..4 + len)
                    .ok_or_else(|| ServeError::invalid("inputs", "truncated BYTES element"))?;
                out.push(String::from_utf8(s.to_vec()).map_err(|_| {
                    ServeError::invalid("inputs", "BYTES elements must be UTF-8 text")
                })?);
                mine = &mine[4 + len..];
            }
            out
        }
        (None, Some(data)) => {
            let mut flat = Vec::new();
            flatten(data, &mut flat);
            flat.into_iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ServeError::invalid("inputs", "BYTES data must be strings"))
                })
                .collect::<Result<_, _>>()?
        }
        (None, None) => {
            return Err(ServeError::invalid(
                "inputs",
                format!("input {:?} has no data", input.name),
            ));
        }
    };
    if texts.len() as i64 != count {
        return Err(ServeError::invalid(
            "inputs",
            format!(
                "input {:?} has {} elements but shape {:?}",
                input.name,
                texts.len(),
                input.shape
            ),
        ));
    }
    Ok(texts)
}

pub(super) fn wants_binary(req: &InferRequest, output: &str) -> bool {
    let per_output = req
        .outputs
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.name == output))
        .and_then(|r| r.parameters.as_ref())
        .and_then(|p| p.get("binary_data"))
        .and_then(Value::as_bool);
    let global =
        req.parameters.as_ref().and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool);
    per_output.or(global).unwrap_or(false)
}

/// A numeric input tensor from JSON data or binary (little-endian).
pub(super) fn tensor_input(input: &InferInput, binary: &mut &[u8]) -> Result<Tensor, ServeError> {
    let bad = |m: String| ServeError::invalid("inputs", m);
    let count = input
        .shape
        .iter()
        .try_fold(1usize, |acc, d| usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d)));
    let count = count.ok_or_else(|| {
        bad(format!("input {:?} has an invalid shape {:?}", input.name, input.shape))
    })?;
    let binary_size =
        input.parameters.as_ref().and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
    let raw: Option<&[u8]> = match binary_size {
        Some(size) => {
            let size =
                usize::try_from(size).map_err(|_| bad("binary_data_size too large".into()))?;
            if size > binary.len() {
                return Err(bad("binary data is shorter than binary_data_size".into()));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            Some(mine)
        }
        None => None,
    };
    let mut flat = Vec::new();
    if raw.is_none() {
        let data = input
            .data
            .as_ref()
            .ok_or_else(|| bad(format!("input {:?} has no data", input.name)))?;
        flatten(data, &mut flat);
    }
    let t = match input.datatype.as_str() {
        "FP32" => {
            let v: Vec<f32> = match raw {
                Some(b) if b.len() % 4 == 0 => b
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Some(_) => {
                    return Err(bad(format!(
                        "input {:?}: binary FP32 data is not a whole number of values",
                        input.name
                    )));
                }
                None => flat
                    .iter()
                    .map(|v| v.as_f64().map(|x| x as f32))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        bad(format!("input {:?}: FP32 data must be numbers", input.name))
                    })?,
            };
            Tensor::f32(input.shape.clone(), v)
        }
        "INT64" => {
            let v: Vec<i64> = match raw {
                Some(b) if b.len() % 8 == 0 => b
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
                Some(_) => {
                    return Err(bad(format!(
                        "input {:?}: binary INT64 data is not a whole number of values",
                        input.name
                    )));
                }
                None => {
                    flat.iter().map(|v| v.as_i64()).collect::<Option<_>>().ok_or_else(|| {
                        bad(format!("input {:?}: INT64 data must be integers", input.name))
                    })?
                }
            };
            Tensor::i64(input.shape.clone(), v)
        }
        other => {
            return Err(bad(format!(
                "input {:?}: datatype {other} is not supported here (FP32, INT64)",
                input.name
            )));
        }
    };
    let t = t.map_err(|e| bad(format!("input {:?}: {e}", input.name)))?;
    if match &t.data {
        TensorData::F32(v) => v.len(),
        TensorData::I64(v) => v.len(),
    } != count
    {
        return Err(bad(format!("input {:?} does not match its shape", input.name)));
    }
    Ok(t)
}
