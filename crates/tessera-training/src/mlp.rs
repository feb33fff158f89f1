//! A small MLP head: one hidden ReLU layer over standardized inputs, a
//! softmax (classification) or linear (regression) output, trained by Adam
//! on seeded mini-batches with early stopping on the validation rows and L2
//! chosen from a grid by validation loss. The standardization is folded
//! into the first layer, so the result reads raw features like the linear
//! heads. Deterministic for a seed.

use crate::linear::{FitError, Matrix, OnEpoch, Settings};
use crate::rng::Rng;

/// Rows per Adam step.
const BATCH: usize = 64;

/// What the output layer fits.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Classes { labels: &'a [usize], classes: usize, weights: Option<&'a [f32]> },
    Values(&'a [f32]),
}

impl Target<'_> {
    fn outputs(&self) -> usize {
        match self {
            Target::Classes { classes, .. } => *classes,
            Target::Values(_) => 1,
        }
    }
}

/// A fitted MLP on raw features.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpFitted {
    /// `hidden x features` and `hidden`.
    pub w1: Vec<Vec<f32>>,
    pub b1: Vec<f32>,
    /// `outputs x hidden` and `outputs`.
    pub w2: Vec<Vec<f32>>,
    pub b2: Vec<f32>,
    pub l2: f32,
    pub epochs: usize,
    pub validation_loss: f32,
}

/// Parameters as one flat vector: w1 (h*d), b1 (h), w2 (k*h), b2 (k).
struct Net {
    d: usize,
    h: usize,
    k: usize,
}

impl Net {
    fn len(&self) -> usize {
        self.h * self.d + self.h + self.k * self.h + self.k
    }
    fn b1(&self) -> usize {
        self.h * self.d
    }
    fn w2(&self) -> usize {
        self.b1() + self.h
    }
    fn b2(&self) -> usize {
        self.w2() + self.k * self.h
    }

    fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed ^ 0x6d6c_7000);
        let mut p = vec![0.0; self.len()];
        // He-uniform for the ReLU layer, Glorot-uniform for the output.
        let a1 = (6.0 / self.d as f32).sqrt();
        let a2 = (6.0 / (self.h + self.k) as f32).sqrt();
        for v in &mut p[..self.b1()] {
            *v = rng.symmetric() * a1;
        }
        for v in &mut p[self.w2()..self.b2()] {
            *v = rng.symmetric() * a2;
        }
        p
    }

    /// Hidden activations and outputs of one row.
    fn forward(&self, p: &[f32], x: &[f32], hid: &mut [f32], out: &mut [f32]) {
        let (d, h) = (self.d, self.h);
        for j in 0..h {
            let w = &p[j * d..(j + 1) * d];
            let z = p[self.b1() + j] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
            hid[j] = z.max(0.0);
        }
        for (c, o) in out.iter_mut().enumerate() {
            let w = &p[self.w2() + c * h..self.w2() + (c + 1) * h];
            *o = p[self.b2() + c] + w.iter().zip(hid.iter()).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

/// The loss of one row's outputs and its gradient with respect to them.
fn row_loss(t: &Target<'_>, i: usize, out: &mut [f32]) -> f32 {
    match t {
        Target::Classes { labels, weights, .. } => {
            let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in out.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let y = labels[i];
            let w = weights.map_or(1.0, |w| w[y]);
            let loss = -(out[y] / sum).max(1e-12).ln() * w;
            for (c, v) in out.iter_mut().enumerate() {
                *v = (*v / sum - if c == y { 1.0 } else { 0.0 }) * w;
            }
            loss
        }
        Target::Values(y) => {
            let r = out[0] - y[i];
            out[0] = r;
            0.5 * r * r
        }
    }
}

fn mean_loss(net: &Net, p: &[f32], x: &Matrix, t: &Target<'_>) -> f32 {
    let (mut hid, mut out) = (vec![0.0; net.h], vec![0.0; net.k]);
    let mut total = 0.0f64;
    for i in 0..x.rows {
        net.forward(p, x.row(i), &mut hid, &mut out);
        total += f64::from(row_loss(t, i, &mut out));
    }
    (total / x.rows.max(1) as f64) as f32
}

/// Fits one L2 strength; the best parameters by validation loss.
#[expect(clippy::too_many_arguments, reason = "the data, the candidate and its settings")]
fn fit_one(
    net: &Net,
    x: &Matrix,
    t: &Target<'_>,
    xv: &Matrix,
    tv: &Target<'_>,
    l2: f32,
    s: &Settings,
    seed: u64,
    on_epoch: &mut dyn FnMut(usize, f32) -> bool,
) -> Result<(Vec<f32>, usize, f32), FitError> {
    let mut p = net.init(seed);
    let (mut m, mut v) = (vec![0.0f32; p.len()], vec![0.0f32; p.len()]);
    let (b1, b2) = (0.9f32, 0.999f32);
    let mut step = 0i32;
    let mut best = (p.clone(), 0usize, f32::INFINITY);
    let mut since = 0;
    let mut order: Vec<usize> = (0..x.rows).collect();
    let mut rng = Rng(seed ^ 0x0b47_c4e5);
    let (mut hid, mut out) = (vec![0.0; net.h], vec![0.0; net.k]);
    let mut grad = vec![0.0f32; p.len()];
    let (d, h, k) = (net.d, net.h, net.k);
    for epoch in 1..=s.max_epochs.max(1) {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let mut epoch_loss = 0.0f64;
        for batch in order.chunks(BATCH) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for &i in batch {
                let row = x.row(i);
                net.forward(&p, row, &mut hid, &mut out);
                epoch_loss += f64::from(row_loss(t, i, &mut out));
                // out now holds dL/dz of the outputs.
                for c in 0..k {
                    let g = out[c];
                    grad[net.b2() + c] += g;
                    let w2 = net.w2() + c * h;
                    for j in 0..h {
                        grad[w2 + j] += g * hid[j];
                    }
                }
                for j in 0..h {
                    if hid[j] <= 0.0 {
                        continue;
                    }
                    let gh: f32 = (0..k).map(|c| out[c] * p[net.w2() + c * h + j]).sum();
                    grad[net.b1() + j] += gh;
                    let w1 = &mut grad[j * d..(j + 1) * d];
                    for (g, xv) in w1.iter_mut().zip(row) {
                        *g += gh * xv;
                    }
                }
            }
            let n = batch.len() as f32;
            step += 1;
            let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
            for idx in 0..p.len() {
                // L2 on the weights, not the biases.
                let is_bias = (net.b1()..net.w2()).contains(&idx) || idx >= net.b2();
                let g = grad[idx] / n + if is_bias { 0.0 } else { l2 * p[idx] };
                m[idx] = b1 * m[idx] + (1.0 - b1) * g;
                v[idx] = b2 * v[idx] + (1.0 - b2) * g * g;
                p[idx] -= s.learning_rate * (m[idx] / c1) / ((v[idx] / c2).sqrt() + 1e-8);
            }
        }
        let train_loss = (epoch_loss / x.rows.max(1) as f64) as f32;
        if !on_epoch(epoch, train_loss) {
            return Err(FitError::Cancelled);
        }
        let vl = mean_loss(net, &p, xv, tv);
        if !vl.is_finite() {
            return Err(FitError::Invalid("training diverged; lower the learning rate".into()));
        }
        if vl < best.2 - 1e-6 {
            best = (p.clone(), epoch, vl);
            since = 0;
        } else {
            since += 1;
            if since >= s.patience {
                break;
            }
        }
    }
    Ok(best)
}

/// Fits the MLP with `hidden` units; `t`/`tv` are the training and
/// validation targets.
#[expect(clippy::too_many_arguments, reason = "the data, the targets and the settings")]
pub fn fit_mlp(
    x: &Matrix,
    t: Target<'_>,
    xv: &Matrix,
    tv: Target<'_>,
    hidden: usize,
    s: &Settings,
    seed: u64,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<MlpFitted, FitError> {
    if let Target::Classes { classes, .. } = t
        && classes < 2
    {
        return Err(FitError::Invalid("a classifier needs at least two classes".into()));
    }
    if hidden == 0 || x.rows == 0 || xv.rows == 0 {
        return Err(FitError::Invalid("an MLP needs hidden units and rows".into()));
    }
    let (mean, std) = crate::linear::standardizer(x);
    let (xs, xvs) =
        (crate::linear::standardize(x, &mean, &std), crate::linear::standardize(xv, &mean, &std));
    let net = Net { d: x.cols, h: hidden, k: t.outputs() };
    let grid = if s.l2_grid.is_empty() { vec![0.0] } else { s.l2_grid.clone() };
    let mut best: Option<(Vec<f32>, f32, usize, f32)> = None;
    for (ci, l2) in grid.iter().enumerate() {
        let (p, epochs, vl) = fit_one(&net, &xs, &t, &xvs, &tv, *l2, s, seed, &mut |e, l| {
            on_epoch(ci, grid.len(), e, l)
        })?;
        if best.as_ref().is_none_or(|b| vl < b.3) {
            best = Some((p, *l2, epochs, vl));
        }
    }
    let (p, l2, epochs, validation_loss) =
        best.ok_or_else(|| FitError::Invalid("no candidate".into()))?;
    let (d, h, k) = (net.d, net.h, net.k);
    let mut w1 = Vec::with_capacity(h);
    let mut b1 = Vec::with_capacity(h);
    for j in 0..h {
        let raw: Vec<f32> = p[j * d..(j + 1) * d].iter().zip(&std).map(|(a, s)| a / s).collect();
        let shift: f32 = raw.iter().zip(&mean).map(|(a, m)| a * m).sum();
        b1.push(p[net.b1() + j] - shift);
        w1.push(raw);
    }
    let w2 = (0..k).map(|c| p[net.w2() + c * h..net.w2() + (c + 1) * h].to_vec()).collect();
    let b2 = p[net.b2()..net.b2() + k].to_vec();
    Ok(MlpFitted { w1, b1, w2, b2, l2, epochs, validation_loss })
}

/// The outputs of a fitted MLP for each row (logits or the value).
pub fn outputs(f: &MlpFitted, x: &Matrix) -> Vec<Vec<f32>> {
    (0..x.rows)
        .map(|i| {
            let row = x.row(i);
            let hid: Vec<f32> =
                f.w1.iter()
                    .zip(&f.b1)
                    .map(|(w, b)| (b + w.iter().zip(row).map(|(a, v)| a * v).sum::<f32>()).max(0.0))
                    .collect();
            f.w2.iter()
                .zip(&f.b2)
                .map(|(w, b)| b + w.iter().zip(&hid).map(|(a, v)| a * v).sum::<f32>())
                .collect()
        })
        .collect()
}

/// The argmax class of each row.
pub fn predict_classes(f: &MlpFitted, x: &Matrix) -> Vec<usize> {
    outputs(f, x)
        .iter()
        .map(|o| {
            o.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |b, (c, &z)| if z > b.1 { (c, z) } else { b })
                .0
        })
        .collect()
}

/// The value of each row.
pub fn predict_values(f: &MlpFitted, x: &Matrix) -> Vec<f32> {
    outputs(f, x).iter().map(|o| o[0]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two interleaved rings: no line separates them, a hidden layer does.
    fn rings(n: usize, seed: u64) -> (Matrix, Vec<usize>) {
        let mut rng = Rng(seed);
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 2;
            let r = if c == 0 { 1.0 } else { 3.0 } + 0.3 * rng.symmetric();
            let a = std::f32::consts::PI * rng.symmetric();
            data.push(50.0 + r * a.cos());
            data.push(-20.0 + r * a.sin());
            labels.push(c);
        }
        (Matrix::new(n, 2, data), labels)
    }

    #[test]
    fn a_hidden_layer_separates_rings_a_line_cannot() {
        let (x, y) = rings(600, 1);
        let (xv, yv) = rings(200, 2);
        let s = Settings {
            l2_grid: vec![1e-4],
            max_epochs: 300,
            patience: 20,
            learning_rate: 0.01,
            ..Settings::default()
        };
        let t = Target::Classes { labels: &y, classes: 2, weights: None };
        let tv = Target::Classes { labels: &yv, classes: 2, weights: None };
        let f = fit_mlp(&x, t, &xv, tv, 16, &s, 7, &mut |_, _, _, _| true).unwrap();
        let right = predict_classes(&f, &xv).iter().zip(&yv).filter(|(a, b)| a == b).count();
        assert!(right as f64 / yv.len() as f64 > 0.95, "{right} of {}", yv.len());
        // The linear head on the same rows does no better than chance.
        let lin = crate::linear::fit_classifier(
            &x,
            &y,
            &xv,
            &yv,
            2,
            &Settings::default(),
            &mut |_, _, _, _| true,
        )
        .unwrap();
        let lin_right = crate::linear::predict_classes(&lin, &xv)
            .iter()
            .zip(&yv)
            .filter(|(a, b)| a == b)
            .count();
        assert!(lin_right < right && (lin_right as f64) < 0.75 * yv.len() as f64, "{lin_right}");
        // Deterministic for a seed.
        let again = fit_mlp(&x, t, &xv, tv, 16, &s, 7, &mut |_, _, _, _| true).unwrap();
        assert_eq!(f, again);
        let cancelled = fit_mlp(&x, t, &xv, tv, 16, &s, 7, &mut |_, _, e, _| e < 3);
        assert_eq!(cancelled, Err(FitError::Cancelled));
    }

    #[test]
    fn a_regressor_fits_a_curve() {
        let xs: Vec<f32> = (0..400).map(|i| i as f32 / 100.0 - 2.0).collect();
        let y: Vec<f32> = xs.iter().map(|v| v * v).collect();
        let x = Matrix::new(400, 1, xs);
        let s = Settings {
            l2_grid: vec![0.0],
            max_epochs: 400,
            patience: 40,
            learning_rate: 0.01,
            ..Settings::default()
        };
        let f = fit_mlp(
            &x,
            Target::Values(&y),
            &x,
            Target::Values(&y),
            32,
            &s,
            3,
            &mut |_, _, _, _| true,
        )
        .unwrap();
        let p = predict_values(&f, &Matrix::new(2, 1, vec![0.0, 1.5]));
        assert!(p[0].abs() < 0.2 && (p[1] - 2.25).abs() < 0.3, "{p:?}");
    }
}
