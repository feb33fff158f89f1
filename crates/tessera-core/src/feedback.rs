//! Feedback (L5): the ground truth a tenant reports for a recorded
//! prediction, as the store keeps it once joined, and the online quality
//! per model version that the joined rows add up to.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// What the right answer was, by the caller's account.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// A classifier's true class.
    Label(String),
    /// A regressor's true value.
    Value(f64),
    /// A rating of the answer (e.g. 0-1 for a thumbs up), for routes with
    /// nothing to compare (chat, embeddings).
    Score(f64),
}

impl Truth {
    /// `label`, `value` or `score`: the stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Truth::Label(_) => "label",
            Truth::Value(_) => "value",
            Truth::Score(_) => "score",
        }
    }
}

/// What the model answered, read from its prediction record.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicted {
    Label(String),
    Value(f64),
}

/// A feedback joined to its prediction record.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedFeedback {
    pub prediction_id: String,
    pub model: String,
    /// The version that answered (its number, as text).
    pub version: String,
    /// `None`: the record holds no label or value to compare (an embedding,
    /// a chat answer).
    pub predicted: Option<Predicted>,
    pub truth: Truth,
    /// When the prediction was made.
    pub predicted_at: Timestamp,
    /// When the feedback was given (the caller's `ts`, else its arrival).
    pub received_at: Timestamp,
    /// The input text, when the tenant keeps inputs (`store_inputs`).
    pub input: Option<String>,
    /// The entity the request named, for models that read features.
    pub entity: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Joined feedback of one version counted together: a classifier's
/// (predicted, true) pair with its count, or a regressor's errors, or a
/// score's sum. The store answers these; [`quality`] turns them into metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityGroup {
    pub version: String,
    /// `label`, `value` or `score`.
    pub kind: String,
    /// The predicted label; for values `Some` (empty) when the record held
    /// a value to compare.
    pub predicted: Option<String>,
    pub truth: Option<String>,
    pub count: u64,
    /// Sum of |predicted - true| (values).
    pub abs_error: f64,
    /// Sum of (predicted - true)² (values).
    pub squared_error: f64,
    /// Sum of the true values or scores.
    pub sum: f64,
}

/// A classifier's online quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassQuality {
    /// Labelled predictions that had a label to compare.
    pub samples: u64,
    pub accuracy: f64,
    /// The mean F1 over every class seen as truth or as prediction.
    pub macro_f1: f64,
    /// Per true class: the share of its samples predicted as it.
    pub recall: BTreeMap<String, f64>,
    /// Per true class, how many samples.
    pub support: BTreeMap<String, u64>,
}

/// A regressor's online quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegressionQuality {
    pub samples: u64,
    pub mae: f64,
    pub rmse: f64,
}

/// Scores given to a version's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreQuality {
    pub samples: u64,
    pub mean: f64,
}

/// One version's online quality over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionQuality {
    pub version: String,
    /// Every joined feedback of the version in the window.
    pub samples: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassQuality>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionQuality>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreQuality>,
}

/// Online quality per version from the store's groups, versions in
/// ascending number order.
pub fn quality(groups: &[QualityGroup]) -> Vec<VersionQuality> {
    let mut by_version: BTreeMap<(u64, &str), Vec<&QualityGroup>> = BTreeMap::new();
    for g in groups {
        let n = g.version.parse::<u64>().unwrap_or(u64::MAX);
        by_version.entry((n, g.version.as_str())).or_default().push(g);
    }
    by_version
        .into_iter()
        .map(|((_, version), gs)| VersionQuality {
            version: version.to_owned(),
            samples: gs.iter().map(|g| g.count).sum(),
            classification: class_quality(&gs),
            regression: regression_quality(&gs),
            score: score_quality(&gs),
        })
        .collect()
}

fn class_quality(gs: &[&QualityGroup]) -> Option<ClassQuality> {
    // (true, predicted) -> count; only pairs with both sides known.
    let pairs: Vec<(&str, &str, u64)> = gs
        .iter()
        .filter(|g| g.kind == "label")
        .filter_map(|g| Some((g.truth.as_deref()?, g.predicted.as_deref()?, g.count)))
        .collect();
    let samples: u64 = pairs.iter().map(|p| p.2).sum();
    if samples == 0 {
        return None;
    }
    let classes: BTreeSet<&str> = pairs.iter().flat_map(|(t, p, _)| [*t, *p]).collect();
    let count = |f: &dyn Fn(&str, &str) -> bool| -> u64 {
        pairs.iter().filter(|(t, p, _)| f(t, p)).map(|p| p.2).sum()
    };
    let right = count(&|t, p| t == p);
    let mut recall = BTreeMap::new();
    let mut support = BTreeMap::new();
    let mut f1_sum = 0.0;
    for c in &classes {
        let tp = count(&|t, p| t == *c && p == *c) as f64;
        let actual = count(&|t, _| t == *c);
        let predicted = count(&|_, p| p == *c) as f64;
        let r = if actual == 0 { 0.0 } else { tp / actual as f64 };
        let p = if predicted == 0.0 { 0.0 } else { tp / predicted };
        f1_sum += if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) };
        if actual > 0 {
            recall.insert((*c).to_owned(), r);
            support.insert((*c).to_owned(), actual);
        }
    }
    Some(ClassQuality {
        samples,
        accuracy: right as f64 / samples as f64,
        macro_f1: f1_sum / classes.len() as f64,
        recall,
        support,
    })
}

fn regression_quality(gs: &[&QualityGroup]) -> Option<RegressionQuality> {
    let vs: Vec<&&QualityGroup> =
        gs.iter().filter(|g| g.kind == "value" && g.predicted.is_some()).collect();
    let samples: u64 = vs.iter().map(|g| g.count).sum();
    (samples > 0).then(|| RegressionQuality {
        samples,
        mae: vs.iter().map(|g| g.abs_error).sum::<f64>() / samples as f64,
        rmse: (vs.iter().map(|g| g.squared_error).sum::<f64>() / samples as f64).sqrt(),
    })
}

fn score_quality(gs: &[&QualityGroup]) -> Option<ScoreQuality> {
    let ss: Vec<&&QualityGroup> = gs.iter().filter(|g| g.kind == "score").collect();
    let samples: u64 = ss.iter().map(|g| g.count).sum();
    (samples > 0).then(|| ScoreQuality {
        samples,
        mean: ss.iter().map(|g| g.sum).sum::<f64>() / samples as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(version: &str, truth: &str, predicted: Option<&str>, count: u64) -> QualityGroup {
        QualityGroup {
            version: version.into(),
            kind: "label".into(),
            predicted: predicted.map(Into::into),
            truth: Some(truth.into()),
            count,
            abs_error: 0.0,
            squared_error: 0.0,
            sum: 0.0,
        }
    }

    #[test]
    fn classifier_quality_from_confusion_counts() {
        // truth pos: 8 right, 2 called neg; truth neg: 5 right, 5 called pos.
        let gs = [
            label("2", "pos", Some("pos"), 8),
            label("2", "pos", Some("neg"), 2),
            label("2", "neg", Some("neg"), 5),
            label("2", "neg", Some("pos"), 5),
            label("2", "neg", None, 3),
        ];
        let q = quality(&gs);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].samples, 23, "every joined feedback counts as a sample");
        let c = q[0].classification.as_ref().expect("a classifier");
        assert_eq!(c.samples, 20, "only pairs with a predicted label are judged");
        assert!((c.accuracy - 13.0 / 20.0).abs() < 1e-12);
        assert!((c.recall["pos"] - 0.8).abs() < 1e-12);
        assert!((c.recall["neg"] - 0.5).abs() < 1e-12);
        // precision pos 8/13, neg 5/7.
        let f1 = |p: f64, r: f64| 2.0 * p * r / (p + r);
        let want = (f1(8.0 / 13.0, 0.8) + f1(5.0 / 7.0, 0.5)) / 2.0;
        assert!((c.macro_f1 - want).abs() < 1e-12, "{} vs {want}", c.macro_f1);
        assert_eq!(c.support["neg"], 10);
        assert!(q[0].regression.is_none() && q[0].score.is_none());
    }

    #[test]
    fn a_class_only_ever_predicted_lowers_macro_f1_but_has_no_recall() {
        let q = quality(&[label("1", "a", Some("a"), 1), label("1", "a", Some("b"), 1)]);
        let c = q[0].classification.as_ref().expect("a classifier");
        assert_eq!(c.recall.keys().collect::<Vec<_>>(), ["a"]);
        // a: p 1, r .5 -> f1 2/3; b: 0.
        assert!((c.macro_f1 - (2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn regression_and_scores_per_version_in_number_order() {
        let value = QualityGroup {
            version: "10".into(),
            kind: "value".into(),
            predicted: Some(String::new()),
            truth: None,
            count: 4,
            abs_error: 6.0,
            squared_error: 16.0,
            sum: 0.0,
        };
        let score = QualityGroup {
            version: "9".into(),
            kind: "score".into(),
            predicted: None,
            truth: None,
            count: 4,
            abs_error: 0.0,
            squared_error: 0.0,
            sum: 3.0,
        };
        let q = quality(&[value, score]);
        assert_eq!(q.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["9", "10"]);
        assert_eq!(q[0].score, Some(ScoreQuality { samples: 4, mean: 0.75 }));
        assert_eq!(q[1].regression, Some(RegressionQuality { samples: 4, mae: 1.5, rmse: 2.0 }));
    }
}
