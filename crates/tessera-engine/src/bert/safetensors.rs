//! A reader for the safetensors format: an 8-byte little-endian header
//! length, a JSON header naming each tensor's dtype, shape and byte range,
//! then the data.

use std::collections::HashMap;

use serde::Deserialize;

use crate::EngineError;

#[derive(Debug, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

pub struct SafeTensors {
    bytes: Vec<u8>,
    data_start: usize,
    entries: HashMap<String, Entry>,
}

impl SafeTensors {
    pub fn parse(bytes: Vec<u8>) -> Result<SafeTensors, EngineError> {
        let bad = |m: String| EngineError::InvalidModel(format!("safetensors: {m}"));
        let len_bytes: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("file too short".into()))?;
        let header_len = usize::try_from(u64::from_le_bytes(len_bytes))
            .map_err(|_| bad("header too large".into()))?;
        let data_start = 8usize
            .checked_add(header_len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("header past the end".into()))?;
        let mut raw: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start])
                .map_err(|e| bad(format!("header is not json: {e}")))?;
        raw.remove("__metadata__");
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, v) in raw {
            let e: Entry =
                serde_json::from_value(v).map_err(|e| bad(format!("entry {name}: {e}")))?;
            let [a, b] = e.data_offsets;
            if a > b || data_start.checked_add(b).is_none_or(|end| end > bytes.len()) {
                return Err(bad(format!("entry {name} points outside the file")));
            }
            entries.insert(name, e);
        }
        Ok(SafeTensors { bytes, data_start, entries })
    }

    /// The tensor `name` (or `<prefix>name`) as `f32`, with its shape.
    pub fn f32(&self, name: &str, prefix: &str) -> Result<(Vec<usize>, Vec<f32>), EngineError> {
        let key = if self.entries.contains_key(name) {
            name.to_owned()
        } else {
            format!("{prefix}{name}")
        };
        let e = self.entries.get(&key).ok_or_else(|| {
            EngineError::InvalidModel(format!("safetensors: tensor {name:?} is missing"))
        })?;
        if e.dtype != "F32" {
            return Err(EngineError::InvalidModel(format!(
                "safetensors: tensor {name:?} is {}, only F32 weights are supported",
                e.dtype
            )));
        }
        let [a, b] = e.data_offsets;
        let data = &self.bytes[self.data_start + a..self.data_start + b];
        let count: usize = e.shape.iter().product();
        if data.len() != count * 4 {
            return Err(EngineError::InvalidModel(format!(
                "safetensors: tensor {name:?} has the wrong size"
            )));
        }
        let values =
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((e.shape.clone(), values))
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.entries.keys().any(|k| k.starts_with(prefix))
    }
}
