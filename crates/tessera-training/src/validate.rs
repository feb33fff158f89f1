//! The measurements of a validation report (L3) that are pure arithmetic:
//! fairness from per-group confusion counts (selection rate, disparate
//! impact by the four-fifths rule, equalized-odds difference), ROC AUC,
//! latency percentiles, and the small perturbations robustness is measured
//! under (typos and casing for text, noise for numbers), all seeded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::linear::Matrix;
use crate::rng::Rng;

/// One group's confusion counts for the positive class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupCounts {
    pub n: u64,
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Share of the group predicted positive.
    pub selection_rate: f64,
    pub true_positive_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
    /// Share of the group whose true label is positive.
    pub base_rate: f64,
}

/// Fairness across the groups of a protected attribute, for one positive class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    pub positive: String,
    pub groups: BTreeMap<String, GroupCounts>,
    /// Lowest selection rate over the highest (1 when no group is selected).
    pub disparate_impact: f64,
    /// The group with the lowest selection rate, and the highest.
    pub least_selected: String,
    pub most_selected: String,
    /// The larger of the spreads in true and false positive rates.
    pub equalized_odds_difference: f64,
    /// Disparate impact of the true labels (what the data itself shows).
    pub label_disparate_impact: f64,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Fairness of `predicted` against `truth` (class indices) across `groups`,
/// with class `positive` as the favourable outcome. Groups smaller than
/// `min_group` rows are left out (their rates say nothing); `None` when
/// fewer than two groups remain.
pub fn fairness(
    groups: &[String],
    truth: &[usize],
    predicted: &[usize],
    positive: usize,
    positive_name: &str,
    min_group: u64,
) -> Option<Fairness> {
    let mut counts: BTreeMap<String, GroupCounts> = BTreeMap::new();
    for ((g, &t), &p) in groups.iter().zip(truth).zip(predicted) {
        let c = counts.entry(g.clone()).or_default();
        c.n += 1;
        match (t == positive, p == positive) {
            (true, true) => c.tp += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
            (true, false) => c.fn_ += 1,
        }
    }
    counts.retain(|_, c| c.n >= min_group);
    if counts.len() < 2 {
        return None;
    }
    for c in counts.values_mut() {
        c.selection_rate = ratio(c.tp + c.fp, c.n).unwrap_or(0.0);
        c.base_rate = ratio(c.tp + c.fn_, c.n).unwrap_or(0.0);
        c.true_positive_rate = ratio(c.tp, c.tp + c.fn_);
        c.false_positive_rate = ratio(c.fp, c.fp + c.tn);
    }
    let by = |f: &dyn Fn(&GroupCounts) -> f64| {
        let mut v: Vec<(&String, f64)> = counts.iter().map(|(g, c)| (g, f(c))).collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        v
    };
    let rates = by(&|c| c.selection_rate);
    let (low, high) = (rates[0], rates[rates.len() - 1]);
    let di = |lo: f64, hi: f64| if hi == 0.0 { 1.0 } else { lo / hi };
    let base = by(&|c| c.base_rate);
    let spread = |f: &dyn Fn(&GroupCounts) -> Option<f64>| {
        let v: Vec<f64> = counts.values().filter_map(f).collect();
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        if v.len() < 2 { 0.0 } else { max - min }
    };
    let eo = spread(&|c| c.true_positive_rate).max(spread(&|c| c.false_positive_rate));
    Some(Fairness {
        positive: positive_name.to_owned(),
        disparate_impact: di(low.1, high.1),
        least_selected: low.0.clone(),
        most_selected: high.0.clone(),
        equalized_odds_difference: eo,
        label_disparate_impact: di(base[0].1, base[base.len() - 1].1),
        groups: counts,
    })
}

/// Area under the ROC curve of `scores` for `positive` rows (ties count
/// half); `None` without both classes.
pub fn roc_auc(positive: &[bool], scores: &[f32]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Ranks with ties averaged (Mann-Whitney U).
    let mut ranks = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[order[k]] = r;
        }
        i = j + 1;
    }
    let np = positive.iter().filter(|p| **p).count() as f64;
    let nn = positive.len() as f64 - np;
    if np == 0.0 || nn == 0.0 {
        return None;
    }
    let sum: f64 = positive.iter().zip(&ranks).filter(|(p, _)| **p).map(|(_, r)| r).sum();
    Some((sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// The `q` quantile (0-1) of `values` by nearest rank.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// A text as a careless writer might type it: about one word in ten with
/// two neighbouring letters swapped, one in ten with its case changed.
pub fn perturb_text(text: &str, seed: u64) -> String {
    let mut rng = Rng(seed ^ 0x5eed_7e57);
    let words: Vec<String> = text
        .split(' ')
        .map(|w| {
            let mut chars: Vec<char> = w.chars().collect();
            let roll = rng.unit();
            if roll < 0.1 && chars.len() >= 4 {
                let i = 1 + (rng.next_u64() as usize) % (chars.len() - 2);
                chars.swap(i, i - 1);
                chars.into_iter().collect()
            } else if roll < 0.2 {
                if rng.unit() < 0.5 { w.to_uppercase() } else { w.to_lowercase() }
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// Every value moved by Gaussian noise of `scale` times its column's
/// standard deviation; one-hot and constant columns are left alone.
pub fn perturb_numbers(x: &Matrix, scale: f64, seed: u64) -> Matrix {
    let mut rng = Rng(seed ^ 0x0a15_e5ed);
    let (n, d) = (x.rows, x.cols);
    let mut std = vec![0.0f64; d];
    let mut binary = vec![true; d];
    for j in 0..d {
        let col = (0..n).map(|i| f64::from(x.data[i * d + j]));
        let mean = col.clone().sum::<f64>() / n.max(1) as f64;
        std[j] = (col.clone().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
        binary[j] = col.clone().all(|v| v == 0.0 || v == 1.0);
    }
    let mut data = x.data.clone();
    for i in 0..n {
        for j in 0..d {
            if !binary[j] && std[j] > 0.0 {
                data[i * d + j] += (rng.normal() * scale * std[j]) as f32;
            }
        }
    }
    Matrix::new(n, d, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fairness_from_counts() {
        // Men selected 3 of 4, women 1 of 4: DI 1/3.
        let groups: Vec<String> = ["m", "m", "m", "m", "f", "f", "f", "f"].map(String::from).into();
        let truth = vec![1, 1, 0, 0, 1, 0, 0, 0];
        let pred = vec![1, 1, 1, 0, 1, 0, 0, 0];
        let f = fairness(&groups, &truth, &pred, 1, ">50K", 1).unwrap();
        assert!((f.disparate_impact - 1.0 / 3.0).abs() < 1e-9, "{f:?}");
        assert_eq!((f.least_selected.as_str(), f.most_selected.as_str()), ("f", "m"));
        // TPR both 1; FPR m 1/2, f 0.
        assert!((f.equalized_odds_difference - 0.5).abs() < 1e-9);
        assert!((f.label_disparate_impact - 0.5).abs() < 1e-9);
        assert_eq!(f.groups["m"].tp, 2);
        // One group after the small ones go: no comparison.
        assert!(fairness(&groups, &truth, &pred, 1, "y", 5).is_none());
    }

    #[test]
    fn auc_and_percentiles() {
        assert_eq!(roc_auc(&[false, false, true, true], &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(roc_auc(&[true, true, false, false], &[0.1, 0.2, 0.8, 0.9]), Some(0.0));
        assert_eq!(roc_auc(&[true, false], &[0.5, 0.5]), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.5, 0.6]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn perturbations_are_small_seeded_and_change_something() {
        let text = "the battery life of this phone is really quite wonderful and lasting long";
        let a = perturb_text(text, 7);
        assert_eq!(a, perturb_text(text, 7));
        assert_ne!(perturb_text(text, 7), perturb_text(text, 8));
        assert_eq!(a.split(' ').count(), text.split(' ').count());
        assert_eq!(a.to_lowercase().len(), text.len());
        let x = Matrix::new(3, 2, vec![1.0, 0.0, 2.0, 1.0, 3.0, 0.0]);
        let y = perturb_numbers(&x, 0.1, 1);
        assert_eq!((y.data[1], y.data[3], y.data[5]), (0.0, 1.0, 0.0), "one-hot columns stay");
        assert!(y.data[0] != 1.0 && (y.data[0] - 1.0).abs() < 1.0);
    }
}
