//! Builds an ONNX graph of a BERT sentence encoder from its `config.json` and
//! `model.safetensors`: embeddings, N transformer layers, pooling (mean over
//! the attention mask, or CLS) and L2 normalisation, so ONNX Runtime computes
//! the finished sentence embedding. Linear weights are stored `[out, in]` by
//! PyTorch and transposed here once; Q, K and V are fused into one matmul.
//!
//! Inputs: `input_ids`, `attention_mask` (int64 `[batch, seq]`).
//! Output: `sentence_embedding` (float `[batch, hidden]`).

use std::path::Path;

use super::config::{BertConfig, Pooling};
use super::safetensors::SafeTensors;
use crate::EngineError;
use crate::onnx::graph::{Attr, Dim, GraphBuilder};
use crate::onnx::proto::{DT_FLOAT, DT_INT64};

/// Bumped whenever the exported graph changes, so cached exports are redone.
pub const EXPORT_VERSION: u32 = 1;

fn transpose(rows: usize, cols: usize, w: &[f32]) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Exports the model in `dir` to ONNX bytes.
pub fn export(dir: &Path, cfg: &BertConfig, pooling: Pooling) -> Result<Vec<u8>, EngineError> {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path)
        .map_err(|e| EngineError::InvalidModel(format!("cannot read {}: {e}", path.display())))?;
    let st = SafeTensors::parse(bytes)?;
    let prefix = if st.has_prefix("embeddings.") { "" } else { "bert." };
    let w = |name: &str| st.f32(name, prefix);

    let h = cfg.hidden_size as i64;
    let heads = cfg.num_attention_heads as i64;
    let head_dim = h / heads;
    let eps = cfg.layer_norm_eps as f32;
    let mut g = GraphBuilder::default();
    g.input("input_ids", DT_INT64, &[Dim::Named("batch"), Dim::Named("sequence")]);
    g.input("attention_mask", DT_INT64, &[Dim::Named("batch"), Dim::Named("sequence")]);

    // Constants.
    let one_i = g.i64_tensor("c_one_i64", &[], &[1]);
    let zero_1d = g.i64_tensor("c_zero_1d", &[1], &[0]);
    let axis0 = g.i64_tensor("c_axes_0", &[1], &[0]);
    let axis1 = g.i64_tensor("c_axes_1", &[1], &[1]);
    let axes12 = g.i64_tensor("c_axes_12", &[2], &[1, 2]);
    let axis2 = g.i64_tensor("c_axes_2", &[1], &[2]);
    let split_qkv = g.i64_tensor("c_split_qkv", &[3], &[h, h, h]);
    let heads_shape = g.i64_tensor("c_heads_shape", &[4], &[0, 0, heads, head_dim]);
    let merged_shape = g.i64_tensor("c_merged_shape", &[3], &[0, 0, h]);
    let one_f = g.f32_tensor("c_one_f", &[], &[1.0]);
    let half_f = g.f32_tensor("c_half_f", &[], &[0.5]);
    let mask_neg = g.f32_tensor("c_mask_neg", &[], &[-10_000.0]);
    let inv_sqrt2 = g.f32_tensor("c_inv_sqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]);
    let scale = g.f32_tensor("c_scale", &[], &[1.0 / (head_dim as f32).sqrt()]);
    let tiny = g.f32_tensor("c_tiny", &[], &[1e-12]);

    // Embeddings: word + (position + token type 0), then LayerNorm.
    let (ws, word) = w("embeddings.word_embeddings.weight")?;
    let word = g.f32_tensor("word_embeddings", &[ws[0] as i64, ws[1] as i64], &word);
    let (ps, mut pos) = w("embeddings.position_embeddings.weight")?;
    let (_, tt) = w("embeddings.token_type_embeddings.weight")?;
    for row in pos.chunks_mut(ps[1]) {
        for (p, t) in row.iter_mut().zip(&tt) {
            *p += t;
        }
    }
    let pos = g.f32_tensor("position_embeddings", &[ps[0] as i64, ps[1] as i64], &pos);
    let (_, lnw) = w("embeddings.LayerNorm.weight")?;
    let (_, lnb) = w("embeddings.LayerNorm.bias")?;
    let emb_ln_w = g.f32_tensor("embeddings_ln_w", &[h], &lnw);
    let emb_ln_b = g.f32_tensor("embeddings_ln_b", &[h], &lnb);

    let we = g.op("Gather", &[&word, "input_ids"], vec![("axis", Attr::Int(0))]);
    let shape = g.op("Shape", &["input_ids"], vec![]);
    let seq = g.op("Gather", &[&shape, &one_i], vec![("axis", Attr::Int(0))]);
    let seq1 = g.op("Unsqueeze", &[&seq, &axis0], vec![]);
    let pe = g.op("Slice", &[&pos, &zero_1d, &seq1, &axis0], vec![]);
    let x0 = g.op("Add", &[&we, &pe], vec![]);
    let mut x = g.op(
        "LayerNormalization",
        &[&x0, &emb_ln_w, &emb_ln_b],
        vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
    );

    // Additive attention mask: 0 where attended, -10000 on padding; [B, 1, 1, L].
    let maskf = g.op("Cast", &["attention_mask"], vec![("to", Attr::Int(i64::from(DT_FLOAT)))]);
    let inv = g.op("Sub", &[&one_f, &maskf], vec![]);
    let bias = g.op("Mul", &[&inv, &mask_neg], vec![]);
    let bias4 = g.op("Unsqueeze", &[&bias, &axes12], vec![]);

    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        let lin = |g: &mut GraphBuilder,
                   name: &str,
                   key: &str|
         -> Result<(String, String), EngineError> {
            let (s, wt) = w(&format!("{p}{key}.weight"))?;
            let (_, b) = w(&format!("{p}{key}.bias"))?;
            let wt = transpose(s[0], s[1], &wt);
            let wn = g.f32_tensor(&format!("l{l}_{name}_w"), &[s[1] as i64, s[0] as i64], &wt);
            let bn = g.f32_tensor(&format!("l{l}_{name}_b"), &[s[0] as i64], &b);
            Ok((wn, bn))
        };
        // Fused QKV: [H, 3H].
        let mut qkv_w = Vec::with_capacity((3 * h * h) as usize);
        let mut qkv_b = Vec::with_capacity((3 * h) as usize);
        let mut parts = Vec::new();
        for k in ["query", "key", "value"] {
            let (s, wt) = w(&format!("{p}attention.self.{k}.weight"))?;
            let (_, b) = w(&format!("{p}attention.self.{k}.bias"))?;
            parts.push(transpose(s[0], s[1], &wt));
            qkv_b.extend_from_slice(&b);
        }
        for r in 0..h as usize {
            for part in &parts {
                qkv_w.extend_from_slice(&part[r * h as usize..(r + 1) * h as usize]);
            }
        }
        let qkv_wn = g.f32_tensor(&format!("l{l}_qkv_w"), &[h, 3 * h], &qkv_w);
        let qkv_bn = g.f32_tensor(&format!("l{l}_qkv_b"), &[3 * h], &qkv_b);
        let qkv = g.op("MatMul", &[&x, &qkv_wn], vec![]);
        let qkv = g.op("Add", &[&qkv, &qkv_bn], vec![]);
        let (q, k, v) = (format!("l{l}_q"), format!("l{l}_k"), format!("l{l}_v"));
        g.op_named(
            "Split",
            &[&qkv, &split_qkv],
            vec![("axis", Attr::Int(2))],
            vec![q.clone(), k.clone(), v.clone()],
        );
        let q = g.op("Reshape", &[&q, &heads_shape], vec![]);
        let q = g.op("Transpose", &[&q], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let k = g.op("Reshape", &[&k, &heads_shape], vec![]);
        let k = g.op("Transpose", &[&k], vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))]);
        let v = g.op("Reshape", &[&v, &heads_shape], vec![]);
        let v = g.op("Transpose", &[&v], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let s = g.op("MatMul", &[&q, &k], vec![]);
        let s = g.op("Mul", &[&s, &scale], vec![]);
        let s = g.op("Add", &[&s, &bias4], vec![]);
        let pr = g.op("Softmax", &[&s], vec![("axis", Attr::Int(-1))]);
        let c = g.op("MatMul", &[&pr, &v], vec![]);
        let c = g.op("Transpose", &[&c], vec![("perm", Attr::Ints(vec![0, 2, 1, 3]))]);
        let c = g.op("Reshape", &[&c, &merged_shape], vec![]);
        let (ow, ob) = lin(&mut g, "attn_out", "attention.output.dense")?;
        let a = g.op("MatMul", &[&c, &ow], vec![]);
        let a = g.op("Add", &[&a, &ob], vec![]);
        let a = g.op("Add", &[&a, &x], vec![]);
        let (_, lw) = w(&format!("{p}attention.output.LayerNorm.weight"))?;
        let (_, lb) = w(&format!("{p}attention.output.LayerNorm.bias"))?;
        let lw = g.f32_tensor(&format!("l{l}_attn_ln_w"), &[h], &lw);
        let lb = g.f32_tensor(&format!("l{l}_attn_ln_b"), &[h], &lb);
        let a = g.op(
            "LayerNormalization",
            &[&a, &lw, &lb],
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
        );
        // Feed-forward with exact (erf) GELU.
        let (iw, ib) = lin(&mut g, "inter", "intermediate.dense")?;
        let i = g.op("MatMul", &[&a, &iw], vec![]);
        let i = g.op("Add", &[&i, &ib], vec![]);
        let e = g.op("Mul", &[&i, &inv_sqrt2], vec![]);
        let e = g.op("Erf", &[&e], vec![]);
        let e = g.op("Add", &[&e, &one_f], vec![]);
        let e = g.op("Mul", &[&i, &e], vec![]);
        let i = g.op("Mul", &[&e, &half_f], vec![]);
        let (o2w, o2b) = lin(&mut g, "out", "output.dense")?;
        let o = g.op("MatMul", &[&i, &o2w], vec![]);
        let o = g.op("Add", &[&o, &o2b], vec![]);
        let o = g.op("Add", &[&o, &a], vec![]);
        let (_, lw) = w(&format!("{p}output.LayerNorm.weight"))?;
        let (_, lb) = w(&format!("{p}output.LayerNorm.bias"))?;
        let lw = g.f32_tensor(&format!("l{l}_out_ln_w"), &[h], &lw);
        let lb = g.f32_tensor(&format!("l{l}_out_ln_b"), &[h], &lb);
        x = g.op(
            "LayerNormalization",
            &[&o, &lw, &lb],
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
        );
    }

    // Pooling.
    let pooled = match pooling {
        Pooling::Mean => {
            let m3 = g.op("Unsqueeze", &[&maskf, &axis2], vec![]);
            let xm = g.op("Mul", &[&x, &m3], vec![]);
            let sum = g.op("ReduceSum", &[&xm, &axis1], vec![("keepdims", Attr::Int(0))]);
            let cnt = g.op("ReduceSum", &[&m3, &axis1], vec![("keepdims", Attr::Int(0))]);
            let cnt = g.op("Max", &[&cnt, &tiny], vec![]);
            g.op("Div", &[&sum, &cnt], vec![])
        }
        Pooling::Cls => {
            let zero = g.i64_tensor("c_zero_i64", &[], &[0]);
            g.op("Gather", &[&x, &zero], vec![("axis", Attr::Int(1))])
        }
    };
    let sq = g.op("Mul", &[&pooled, &pooled], vec![]);
    let ss = g.op("ReduceSum", &[&sq, &axis1], vec![("keepdims", Attr::Int(1))]);
    let norm = g.op("Sqrt", &[&ss], vec![]);
    let norm = g.op("Max", &[&norm, &tiny], vec![]);
    g.op_named("Div", &[&pooled, &norm], vec![], vec!["sentence_embedding".into()]);
    g.output("sentence_embedding", DT_FLOAT, &[Dim::Named("batch"), Dim::Fixed(h)]);
    Ok(g.finish("tessera_bert_sentence_encoder"))
}
