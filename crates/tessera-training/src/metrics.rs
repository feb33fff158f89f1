//! Holdout metrics: for classifiers the confusion matrix and what derives
//! from it (accuracy, per-class precision and recall, macro-F1); for
//! regressors MAE, RMSE and R². And the seeded split every job uses.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A classifier's holdout metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassMetrics {
    pub samples: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Per class, in `labels` order.
    pub labels: Vec<String>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

pub fn classification(labels: &[String], truth: &[usize], predicted: &[usize]) -> ClassMetrics {
    let k = labels.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (t, p) in truth.iter().zip(predicted) {
        confusion[*t][*p] += 1;
    }
    let n = truth.len();
    let right: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let mut precision = Vec::with_capacity(k);
    let mut recall = Vec::with_capacity(k);
    let mut f1 = 0.0;
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c] as f64;
        let predicted_c: u64 = confusion.iter().map(|r| r[c]).sum();
        let actual_c: u64 = row.iter().sum();
        let p = if predicted_c == 0 { 0.0 } else { tp / predicted_c as f64 };
        let r = if actual_c == 0 { 0.0 } else { tp / actual_c as f64 };
        f1 += if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
        precision.push(p);
        recall.push(r);
    }
    ClassMetrics {
        samples: n,
        accuracy: if n == 0 { 0.0 } else { right as f64 / n as f64 },
        macro_f1: if k == 0 { 0.0 } else { f1 / k as f64 },
        labels: labels.to_vec(),
        precision,
        recall,
        confusion,
    }
}

/// A regressor's holdout metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegressionMetrics {
    pub samples: usize,
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

pub fn regression(truth: &[f32], predicted: &[f32]) -> RegressionMetrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
    let (mut abs, mut sq, mut tot) = (0.0, 0.0, 0.0);
    for (t, p) in truth.iter().zip(predicted) {
        let (t, p) = (f64::from(*t), f64::from(*p));
        abs += (t - p).abs();
        sq += (t - p).powi(2);
        tot += (t - mean).powi(2);
    }
    RegressionMetrics {
        samples: truth.len(),
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        r2: if tot == 0.0 { 0.0 } else { 1.0 - sq / tot },
    }
}

/// SplitMix64: a small, well-mixed generator, so a seed gives the same
/// split on every machine.
/// Row indices shuffled by `seed` (Fisher-Yates), cut into the first
/// `1 - holdout` (training) and the rest (holdout); each part sorted.
pub fn split(rows: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let idx = crate::rng::Rng(seed).permutation(rows);
    let held = ((rows as f64) * holdout).round() as usize;
    let (train, test) = idx.split_at(rows - held.min(rows));
    let (mut train, mut test) = (train.to_vec(), test.to_vec());
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// `k` folds of `rows` rows, seeded: each row in exactly one fold, the
/// folds within a row of each other in size; each fold as (the other rows,
/// the fold), both sorted.
pub fn folds(rows: usize, k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let idx = crate::rng::Rng(seed).permutation(rows);
    let k = k.clamp(1, rows.max(1));
    (0..k)
        .map(|f| {
            let (mut rest, mut fold) = (Vec::new(), Vec::new());
            for (pos, &i) in idx.iter().enumerate() {
                if pos % k == f { fold.push(i) } else { rest.push(i) }
            }
            rest.sort_unstable();
            fold.sort_unstable();
            (rest, fold)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_cover_every_row_once() {
        let f = folds(10, 3, 1);
        assert_eq!(f.len(), 3);
        let mut all: Vec<usize> = f.iter().flat_map(|(_, v)| v.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(f.iter().all(|(rest, fold)| rest.len() + fold.len() == 10 && fold.len() >= 3));
        assert_eq!(f, folds(10, 3, 1));
    }

    #[test]
    fn classification_metrics_come_from_the_confusion_matrix() {
        let labels = ["a".to_owned(), "b".to_owned()];
        let m = classification(&labels, &[0, 0, 1, 1, 1], &[0, 1, 1, 1, 0]);
        assert_eq!(m.confusion, vec![vec![1, 1], vec![1, 2]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.precision[1] - 2.0 / 3.0).abs() < 1e-12 && (m.recall[0] - 0.5).abs() < 1e-12);
        let f1_a = 0.5;
        let f1_b = 2.0 * (2.0 / 3.0) * (2.0 / 3.0) / (4.0 / 3.0);
        assert!((m.macro_f1 - (f1_a + f1_b) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn regression_metrics_and_a_seeded_split() {
        let r = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((r.mae - 2.0 / 3.0).abs() < 1e-9 && (r.rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert!((r.r2 - (1.0 - 4.0 / 2.0)).abs() < 1e-9);
        let (t, h) = split(100, 0.2, 42);
        assert_eq!((t.len(), h.len()), (80, 20));
        assert_eq!(split(100, 0.2, 42), (t.clone(), h.clone()));
        assert_ne!(split(100, 0.2, 43).1, h);
        let mut all: Vec<usize> = t.into_iter().chain(h).collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
