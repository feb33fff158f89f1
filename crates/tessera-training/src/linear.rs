//! The linear trainers: multinomial logistic regression (softmax, cross
//! entropy) and least-squares regression, both with L2 regularization,
//! optimized full-batch with Adam, early-stopped on a validation split, the
//! L2 strength chosen from a small grid by validation loss. Deterministic:
//! no randomness here (the split is the caller's, seeded).
//!
//! Features are standardized inside (mean 0, variance 1 on the training
//! rows) and the standardization is folded back into the weights, so the
//! result takes raw features: `z = W x + b`.

/// A dense row-major matrix of `rows` x `cols` features.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self { rows, cols, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Matrix::new(idx.len(), self.cols, data)
    }
}

/// How training goes: the grid of L2 strengths, the most epochs, patience.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub l2_grid: Vec<f32>,
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    pub learning_rate: f32,
    /// Per-class weights (classification), e.g. balanced; `None`: all 1.
    pub class_weights: Option<Vec<f32>>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            l2_grid: vec![1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
            max_epochs: 500,
            patience: 20,
            learning_rate: 0.05,
            class_weights: None,
        }
    }
}

/// Weights per class `n_classes x n_features`, `class_weight = n / (k * n_c)`.
pub fn balanced_weights(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l] += 1;
    }
    counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { labels.len() as f32 / (classes as f32 * c as f32) })
        .collect()
}

/// What a fit gives: raw-feature weights and what it chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// `outputs x features`.
    pub weights: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
    pub l2: f32,
    pub epochs: usize,
    pub validation_loss: f32,
}

/// Progress of a fit: (candidate, of candidates, epoch, training loss);
/// return `false` to stop (cancelled).
pub type OnEpoch<'a> = dyn FnMut(usize, usize, usize, f32) -> bool + 'a;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("training was cancelled")]
    Cancelled,
    #[error("{0}")]
    Invalid(String),
}

/// Feature means and standard deviations over `x`'s rows (a constant
/// feature gets 1, so it scales to 0).
pub(crate) fn standardizer(x: &Matrix) -> (Vec<f32>, Vec<f32>) {
    let n = x.rows.max(1) as f64;
    let mut mean = vec![0f64; x.cols];
    for i in 0..x.rows {
        for (m, v) in mean.iter_mut().zip(x.row(i)) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; x.cols];
    for i in 0..x.rows {
        for ((s, v), m) in var.iter_mut().zip(x.row(i)).zip(&mean) {
            *s += (f64::from(*v) - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|s| (s / n).sqrt())
        .map(|s| if s < 1e-12 { 1.0 } else { s as f32 })
        .collect();
    (mean.iter().map(|m| *m as f32).collect(), std)
}

pub(crate) fn standardize(x: &Matrix, mean: &[f32], std: &[f32]) -> Matrix {
    let mut data = x.data.clone();
    for row in data.chunks_exact_mut(x.cols) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
    Matrix::new(x.rows, x.cols, data)
}

/// The model's task: classes with their labels, or a real target.
#[derive(Debug, Clone, Copy)]
enum Loss<'a> {
    Softmax { labels: &'a [usize], classes: usize, weights: Option<&'a [f32]> },
    Squared { targets: &'a [f32] },
}

impl Loss<'_> {
    fn outputs(&self) -> usize {
        match self {
            Loss::Softmax { classes, .. } => *classes,
            Loss::Squared { .. } => 1,
        }
    }

    /// Mean loss of `w` (`k x (d + 1)`, bias last) on `x`, and its gradient
    /// when `grad` is given; L2 on the weights, not the bias.
    fn eval(&self, w: &[f32], x: &Matrix, l2: f32, grad: Option<&mut [f32]>) -> f32 {
        let (k, d) = (self.outputs(), x.cols);
        let stride = d + 1;
        let mut g = grad;
        if let Some(g) = g.as_deref_mut() {
            g.iter_mut().for_each(|v| *v = 0.0);
        }
        let mut total = 0f64;
        let mut weight_sum = 0f64;
        let mut z = vec![0f32; k];
        for i in 0..x.rows {
            let row = x.row(i);
            for (c, zc) in z.iter_mut().enumerate() {
                let wc = &w[c * stride..(c + 1) * stride];
                *zc = wc[d] + wc[..d].iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
            }
            // The residual per output: dL/dz.
            let (loss, sample_w) = match *self {
                Loss::Softmax { labels, weights, .. } => {
                    let y = labels[i];
                    let sw = weights.map_or(1.0, |cw| cw[y]);
                    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for v in z.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    let p_y = (z[y] / sum).max(1e-12);
                    for (c, v) in z.iter_mut().enumerate() {
                        *v = (*v / sum - if c == y { 1.0 } else { 0.0 }) * sw;
                    }
                    (-f64::from(p_y.ln()) * f64::from(sw), sw)
                }
                Loss::Squared { targets } => {
                    let r = z[0] - targets[i];
                    z[0] = r;
                    (0.5 * f64::from(r) * f64::from(r), 1.0)
                }
            };
            total += loss;
            weight_sum += f64::from(sample_w);
            if let Some(g) = g.as_deref_mut() {
                for (c, r) in z.iter().enumerate() {
                    let gc = &mut g[c * stride..(c + 1) * stride];
                    for (gv, xv) in gc[..d].iter_mut().zip(row) {
                        *gv += r * xv;
                    }
                    gc[d] += r;
                }
            }
        }
        let n = weight_sum.max(1e-12);
        let mut reg = 0f64;
        for c in 0..k {
            for v in &w[c * stride..c * stride + d] {
                reg += f64::from(v * v);
            }
        }
        if let Some(g) = g {
            let nf = n as f32;
            for c in 0..k {
                let (wc, gc) =
                    (&w[c * stride..(c + 1) * stride], &mut g[c * stride..(c + 1) * stride]);
                for j in 0..d {
                    gc[j] = gc[j] / nf + l2 * wc[j];
                }
                gc[d] /= nf;
            }
        }
        (total / n + 0.5 * f64::from(l2) * reg) as f32
    }
}

/// One candidate: Adam from zero, stopped when validation loss has not
/// improved for `patience` epochs; the best epoch's weights.
fn fit_one(
    loss: Loss<'_>,
    val: Loss<'_>,
    x: &Matrix,
    xv: &Matrix,
    l2: f32,
    s: &Settings,
    on_epoch: &mut dyn FnMut(usize, f32) -> bool,
) -> Result<(Vec<f32>, usize, f32), FitError> {
    let n = loss.outputs() * (x.cols + 1);
    let (mut w, mut m, mut v, mut g) = (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut best = (w.clone(), 0usize, f32::INFINITY);
    let mut since = 0;
    for epoch in 1..=s.max_epochs {
        let train_loss = loss.eval(&w, x, l2, Some(&mut g));
        let (c1, c2) = (1.0 - b1.powi(epoch as i32), 1.0 - b2.powi(epoch as i32));
        for i in 0..n {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= s.learning_rate * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
        // Validation loss without the penalty: what generalizes.
        let vl = val.eval(&w, xv, 0.0, None);
        if !vl.is_finite() {
            return Err(FitError::Invalid("training diverged (a loss is not finite)".into()));
        }
        if vl < best.2 - 1e-6 {
            best = (w.clone(), epoch, vl);
            since = 0;
        } else {
            since += 1;
        }
        if !on_epoch(epoch, train_loss) {
            return Err(FitError::Cancelled);
        }
        if since >= s.patience {
            break;
        }
    }
    Ok(best)
}

/// Fits on `x` (training rows) and picks by `xv` (validation rows), then
/// unfolds the standardization into raw-feature weights.
fn fit<'a>(
    x: &Matrix,
    xv: &Matrix,
    make: &dyn Fn(bool) -> Loss<'a>,
    s: &Settings,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<Fitted, FitError> {
    if x.rows == 0 || xv.rows == 0 {
        return Err(FitError::Invalid("training and validation need rows".into()));
    }
    let (mean, std) = standardizer(x);
    let (xs, xvs) = (standardize(x, &mean, &std), standardize(xv, &mean, &std));
    let mut best: Option<(Vec<f32>, f32, usize, f32)> = None;
    let grid = if s.l2_grid.is_empty() { vec![0.0] } else { s.l2_grid.clone() };
    for (ci, l2) in grid.iter().enumerate() {
        let (w, epochs, vl) = fit_one(make(true), make(false), &xs, &xvs, *l2, s, &mut |e, l| {
            on_epoch(ci, grid.len(), e, l)
        })?;
        if best.as_ref().is_none_or(|b| vl < b.3) {
            best = Some((w, *l2, epochs, vl));
        }
    }
    let (w, l2, epochs, validation_loss) =
        best.ok_or_else(|| FitError::Invalid("no candidate".into()))?;
    let (k, d) = (make(true).outputs(), x.cols);
    let mut weights = Vec::with_capacity(k);
    let mut bias = Vec::with_capacity(k);
    for c in 0..k {
        let wc = &w[c * (d + 1)..(c + 1) * (d + 1)];
        let raw: Vec<f32> = wc[..d].iter().zip(&std).map(|(a, s)| a / s).collect();
        let shift: f32 = raw.iter().zip(&mean).map(|(a, m)| a * m).sum();
        bias.push(wc[d] - shift);
        weights.push(raw);
    }
    Ok(Fitted { weights, bias, l2, epochs, validation_loss })
}

/// Multinomial logistic regression: `labels[i]` in `0..classes`.
pub fn fit_classifier(
    x: &Matrix,
    labels: &[usize],
    xv: &Matrix,
    val_labels: &[usize],
    classes: usize,
    s: &Settings,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<Fitted, FitError> {
    if classes < 2 {
        return Err(FitError::Invalid("a classifier needs at least two classes".into()));
    }
    let cw = s.class_weights.as_deref();
    let make = |train: bool| {
        if train {
            Loss::Softmax { labels, classes, weights: cw }
        } else {
            Loss::Softmax { labels: val_labels, classes, weights: None }
        }
    };
    fit(x, xv, &make, s, on_epoch)
}

/// Least-squares regression of one target.
pub fn fit_regressor(
    x: &Matrix,
    targets: &[f32],
    xv: &Matrix,
    val_targets: &[f32],
    s: &Settings,
    on_epoch: &mut OnEpoch<'_>,
) -> Result<Fitted, FitError> {
    let make = |train: bool| Loss::Squared { targets: if train { targets } else { val_targets } };
    fit(x, xv, &make, s, on_epoch)
}

/// Class scores of a fitted classifier on raw features: the argmax per row.
pub fn predict_classes(f: &Fitted, x: &Matrix) -> Vec<usize> {
    (0..x.rows)
        .map(|i| {
            let row = x.row(i);
            f.weights
                .iter()
                .zip(&f.bias)
                .map(|(w, b)| b + w.iter().zip(row).map(|(a, v)| a * v).sum::<f32>())
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |acc, (c, z)| if z > acc.1 { (c, z) } else { acc })
                .0
        })
        .collect()
}

/// Predictions of a fitted regressor on raw features.
pub fn predict_values(f: &Fitted, x: &Matrix) -> Vec<f32> {
    (0..x.rows)
        .map(|i| f.bias[0] + f.weights[0].iter().zip(x.row(i)).map(|(a, v)| a * v).sum::<f32>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated blobs in 2-D with an offset the standardization must undo.
    fn blobs() -> (Matrix, Vec<usize>) {
        let centers = [(100.0, 5.0), (104.0, 5.0), (102.0, 9.0)];
        let mut data = Vec::new();
        let mut labels = Vec::new();
        let mut state = 7u64;
        let mut noise = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        for i in 0..300 {
            let c = i % 3;
            data.push(centers[c].0 + noise());
            data.push(centers[c].1 + noise());
            labels.push(c);
        }
        (Matrix::new(300, 2, data), labels)
    }

    #[test]
    fn a_classifier_separates_blobs_on_raw_features() {
        let (x, y) = blobs();
        let idx_t: Vec<usize> = (0..240).collect();
        let idx_v: Vec<usize> = (240..300).collect();
        let (xt, xv) = (x.take(&idx_t), x.take(&idx_v));
        let (yt, yv): (Vec<usize>, Vec<usize>) = (y[..240].to_vec(), y[240..].to_vec());
        let mut epochs = 0;
        let f = fit_classifier(&xt, &yt, &xv, &yv, 3, &Settings::default(), &mut |_, _, _, _| {
            epochs += 1;
            true
        })
        .unwrap();
        assert!(epochs > 0);
        let pred = predict_classes(&f, &xv);
        let right = pred.iter().zip(&yv).filter(|(a, b)| a == b).count();
        assert_eq!(right, yv.len(), "{f:?}");
        // Deterministic: the same fit twice gives the same weights.
        let again =
            fit_classifier(&xt, &yt, &xv, &yv, 3, &Settings::default(), &mut |_, _, _, _| true)
                .unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn a_regressor_recovers_a_line_and_cancelling_stops() {
        let xs: Vec<f32> = (0..200).map(|i| i as f32 / 10.0).collect();
        let x = Matrix::new(200, 1, xs.clone());
        let y: Vec<f32> = xs.iter().map(|v| 3.0 * v - 2.0).collect();
        let s =
            Settings { l2_grid: vec![0.0], max_epochs: 3000, patience: 50, ..Settings::default() };
        let f = fit_regressor(&x, &y, &x, &y, &s, &mut |_, _, _, _| true).unwrap();
        assert!((f.weights[0][0] - 3.0).abs() < 0.02 && (f.bias[0] + 2.0).abs() < 0.1, "{f:?}");
        let p = predict_values(&f, &Matrix::new(1, 1, vec![10.0]));
        assert!((p[0] - 28.0).abs() < 0.2, "{p:?}");
        let cancelled = fit_regressor(&x, &y, &x, &y, &s, &mut |_, _, e, _| e < 5);
        assert_eq!(cancelled, Err(FitError::Cancelled));
        let one_class = fit_classifier(&x, &[0; 200], &x, &[0; 200], 1, &s, &mut |_, _, _, _| true);
        assert!(matches!(one_class, Err(FitError::Invalid(_))));
    }

    #[test]
    fn balanced_weights_even_out_classes() {
        let w = balanced_weights(&[0, 0, 0, 1], 2);
        assert!((w[0] - 4.0 / 6.0).abs() < 1e-6 && (w[1] - 2.0).abs() < 1e-6, "{w:?}");
    }
}
