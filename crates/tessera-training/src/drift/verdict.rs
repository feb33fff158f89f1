//! Verdicts: Evidently's default test per column type and reference size,
//! its dataset rule, and NannyML's standard-deviation bounds over chunks,
//! on top of the statistics of the parent module.

use std::collections::BTreeMap;

use super::*;

/// The kind of a column, as Evidently types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

/// A drift test or distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftMethod {
    /// [`ks_2samp`] p-value; drift when `p <= threshold` (Evidently's `<=`).
    KolmogorovSmirnov,
    /// [`chi_square_drift`] p-value; drift when `p < threshold`.
    ChiSquare,
    /// [`proportions_z_test`] p-value; drift when `p < threshold`.
    ProportionZ,
    /// [`wasserstein_normalized`]; drift when `value >= threshold`.
    WassersteinNormalized,
    /// [`jensen_shannon`] in base 2; drift when `value >= threshold`.
    JensenShannon,
}

impl DriftMethod {
    /// Evidently's default: 0.05 for the p-values, 0.1 for the distances.
    pub fn default_threshold(self) -> f64 {
        match self {
            Self::KolmogorovSmirnov | Self::ChiSquare | Self::ProportionZ => 0.05,
            Self::WassersteinNormalized | Self::JensenShannon => 0.1,
        }
    }

    /// Whether `value` of this method means drift at `threshold`.
    pub fn is_drift(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::KolmogorovSmirnov => value <= threshold,
            Self::ChiSquare | Self::ProportionZ => value < threshold,
            Self::WassersteinNormalized | Self::JensenShannon => value >= threshold,
        }
    }
}

/// A method with the threshold it is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftTest {
    pub method: DriftMethod,
    pub threshold: f64,
}

/// Reference rows above which Evidently switches from tests to distances.
pub const EVIDENTLY_SMALL_REFERENCE: usize = 1000;
/// Distinct values at or below which Evidently treats a numeric column as
/// categorical.
pub const EVIDENTLY_FEW_VALUES: usize = 5;

/// Evidently's default stattest (`_get_default_stattest`), given the column's
/// kind, the reference's row count and the distinct values of reference and
/// current together. Up to 1000 reference rows: numeric -> KS, categorical
/// (or numeric with at most 5 values) -> chi-squared, or the z-test with at
/// most 2 values. Above: numeric -> normalized Wasserstein, categorical (or
/// at most 5 values) -> Jensen-Shannon.
pub fn default_test(kind: ColumnKind, reference_rows: usize, unique_values: usize) -> DriftTest {
    let categorical = kind == ColumnKind::Categorical || unique_values <= EVIDENTLY_FEW_VALUES;
    let method = match (reference_rows <= EVIDENTLY_SMALL_REFERENCE, categorical) {
        (true, false) => DriftMethod::KolmogorovSmirnov,
        (true, true) if unique_values > 2 => DriftMethod::ChiSquare,
        (true, true) => DriftMethod::ProportionZ,
        (false, false) => DriftMethod::WassersteinNormalized,
        (false, true) => DriftMethod::JensenShannon,
    };
    DriftTest { method, threshold: method.default_threshold() }
}

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Numeric(Vec<f64>),
    Categorical(Vec<String>),
}

/// One column's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColumnDrift {
    pub method: DriftMethod,
    pub value: f64,
    pub threshold: f64,
    pub drifted: bool,
}

/// A column's drift by Evidently's default test ([`default_test`]) and
/// threshold. Numeric columns drop NaN and ±inf first; the rows counted and
/// the values told apart are what is left (`-0.0` and `0.0` are one value).
pub fn column_drift(reference: &Column, current: &Column) -> Result<ColumnDrift, DriftError> {
    match (reference, current) {
        (Column::Numeric(r), Column::Numeric(c)) => {
            let (r, c) = (finite_sorted(r)?, finite_sorted(c)?);
            let counts = |v: &[f64]| {
                let mut m = BTreeMap::new();
                v.iter().for_each(|x| *m.entry((x + 0.0).to_bits()).or_insert(0) += 1);
                m
            };
            let aligned = align_counts(&counts(&r), &counts(&c));
            judge(ColumnKind::Numeric, r.len(), &aligned.reference, &aligned.current, (&r, &c))
        }
        (Column::Categorical(r), Column::Categorical(c)) => {
            if r.is_empty() || c.is_empty() {
                return Err(DriftError::EmptySample);
            }
            let aligned = align_counts(&count_categories(r), &count_categories(c));
            judge(
                ColumnKind::Categorical,
                r.len(),
                &aligned.reference,
                &aligned.current,
                (&[], &[]),
            )
        }
        _ => Err(DriftError::KindMismatch),
    }
}

/// Runs the default test on aligned counts, or on `samples` (the numeric
/// values; empty for a categorical column, for which no numeric method is
/// ever chosen).
fn judge(
    kind: ColumnKind,
    reference_rows: usize,
    reference_counts: &[f64],
    current_counts: &[f64],
    samples: (&[f64], &[f64]),
) -> Result<ColumnDrift, DriftError> {
    let DriftTest { method, threshold } =
        default_test(kind, reference_rows, reference_counts.len());
    let value = match method {
        DriftMethod::KolmogorovSmirnov => ks_2samp(samples.0, samples.1)?.p_value,
        DriftMethod::WassersteinNormalized => wasserstein_normalized(samples.0, samples.1)?,
        DriftMethod::ChiSquare => chi_square_drift(reference_counts, current_counts)?.p_value,
        DriftMethod::JensenShannon => jensen_shannon(reference_counts, current_counts, Some(2.0))?,
        DriftMethod::ProportionZ => {
            // Evidently's "hit" is any value other than the first in key order.
            let total = |c: &[f64]| c.iter().sum::<f64>();
            let hits = |c: &[f64]| total(c) - c.first().copied().unwrap_or(0.0);
            let (r, c) = (reference_counts, current_counts);
            proportions_z_test(hits(r), total(r), hits(c), total(c))?.p_value
        }
    };
    Ok(ColumnDrift { method, value, threshold, drifted: method.is_drift(value, threshold) })
}

/// Evidently's default share of drifted columns that makes a dataset drift.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// A dataset's verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatasetDrift {
    pub columns: usize,
    pub drifted_columns: usize,
    /// `drifted_columns / columns`.
    pub share: f64,
    /// `share >= drift_share`.
    pub drifted: bool,
}

/// The dataset drifts when at least `drift_share` (in `[0, 1]`; Evidently's
/// default [`DEFAULT_DRIFT_SHARE`]) of its columns do. No columns, or a share
/// out of range, is [`DriftError::InvalidParameter`].
pub fn dataset_drift(
    columns: &[ColumnDrift],
    drift_share: f64,
) -> Result<DatasetDrift, DriftError> {
    if columns.is_empty() || !(0.0..=1.0).contains(&drift_share) {
        return Err(DriftError::InvalidParameter);
    }
    let drifted_columns = columns.iter().filter(|c| c.drifted).count();
    let share = drifted_columns as f64 / columns.len() as f64;
    Ok(DatasetDrift {
        columns: columns.len(),
        drifted_columns,
        share,
        drifted: share >= drift_share,
    })
}

// --- NannyML-style chunk thresholds ---

/// NannyML's default multiplier of the reference chunks' standard deviation.
pub const NANNYML_STD_MULTIPLIER: f64 = 3.0;

/// Alert bounds learnt from a statistic's values on the reference chunks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub mean: f64,
    /// Population standard deviation (ddof = 0).
    pub std: f64,
    pub lower: f64,
    pub upper: f64,
}

impl Bounds {
    /// Whether a chunk's value is above the upper bound: the alert for
    /// distances, where only growth is bad.
    pub fn exceeds_upper(&self, value: f64) -> bool {
        value > self.upper
    }

    /// Whether a chunk's value is outside `[lower, upper]`.
    pub fn is_outside(&self, value: f64) -> bool {
        value > self.upper || value < self.lower
    }
}

/// `mean ± multiplier * std` of the reference chunks' values, as NannyML's
/// `StandardDeviationThreshold` (`np.nanmean` and `np.nanstd`, so ddof = 0,
/// NaN ignored; ±inf are dropped too). A negative or NaN multiplier is
/// [`DriftError::InvalidParameter`].
pub fn reference_bounds(chunk_values: &[f64], multiplier: f64) -> Result<Bounds, DriftError> {
    if multiplier.is_nan() || multiplier < 0.0 {
        return Err(DriftError::InvalidParameter);
    }
    let (mean, std) = mean_std(&finite_sorted(chunk_values)?);
    Ok(Bounds { mean, std, lower: mean - multiplier * std, upper: mean + multiplier * std })
}

/// Splits `sample` into `chunks` consecutive chunks whose sizes differ by at
/// most one, the first `len % chunks` one longer (`np.array_split`). Zero
/// chunks, or more chunks than values, is [`DriftError::InvalidParameter`].
pub fn split_chunks<T>(sample: &[T], chunks: usize) -> Result<Vec<&[T]>, DriftError> {
    if chunks == 0 || chunks > sample.len() {
        return Err(DriftError::InvalidParameter);
    }
    let (size, longer) = (sample.len() / chunks, sample.len() % chunks);
    let mut rest = sample;
    let mut out = Vec::with_capacity(chunks);
    for k in 0..chunks {
        let (chunk, tail) = rest.split_at(size + usize::from(k < longer));
        out.push(chunk);
        rest = tail;
    }
    Ok(out)
}
