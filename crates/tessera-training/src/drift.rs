//! Drift statistics for model monitoring: pure functions comparing a
//! reference sample (training data, or a window known to be healthy) with a
//! current sample (recent traffic), and the rules that turn them into
//! verdicts per column, per dataset and per chunk.
//!
//! What each piece matches (the tests check it against SciPy 1.17 / NumPy 2.4):
//! - [`ks_2samp`] is `scipy.stats.ks_2samp(reference, current)`, two-sided,
//!   `method='auto'`: exact up to 10 000 values a side (its doc covers larger samples).
//! - [`wasserstein`] is `scipy.stats.wasserstein_distance`, and
//!   [`wasserstein_normalized`] Evidently's `wasserstein` stattest.
//! - [`jensen_shannon`] is `scipy.spatial.distance.jensenshannon`.
//! - [`chi_square`] is `scipy.stats.chisquare`, [`chi_square_drift`]
//!   Evidently's `chisquare` stattest, [`proportions_z_test`] its `z` one.
//! - [`gamma_q`], [`gamma_p`], [`ln_gamma`] and [`kolmogorov_sf`] are
//!   `scipy.special.gammaincc`, `gammainc`, `gammaln` and `kolmogorov`.
//! - [`psi`] is the population stability index over reference-quantile bins.
//! - [`default_test`], [`column_drift`] and [`dataset_drift`] are Evidently's
//!   default stattest choice and dataset verdict; [`reference_bounds`] and
//!   [`split_chunks`] NannyML's standard-deviation thresholds over chunks.
//!
//! Conventions: NaN and ±inf in a numeric sample are dropped first (Evidently
//! drops them before any stattest); a sample with nothing left is
//! [`DriftError::EmptySample`]. No function over samples or counts returns
//! NaN: a degenerate input is an error or a documented value. The special
//! functions follow the float convention instead: outside their domain, NaN.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::PI;
use std::fmt;

/// Why a drift statistic could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftError {
    /// A sample had no finite value (after dropping NaN and ±inf).
    EmptySample,
    /// Two slices that must be aligned differ in length.
    LengthMismatch { left: usize, right: usize },
    /// Counts or proportions were negative, not finite, or all zero.
    InvalidDistribution,
    /// A test over categories needs at least two of them.
    TooFewCategories,
    /// A parameter out of range: zero bins, a bad chunk count, log base,
    /// drift share or multiplier, or no columns at all.
    InvalidParameter,
    /// The reference and current columns are of different kinds.
    KindMismatch,
}

impl fmt::Display for DriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptySample => write!(f, "a sample has no finite value"),
            Self::LengthMismatch { left, right } => {
                write!(f, "aligned slices differ in length ({left} vs {right})")
            }
            Self::InvalidDistribution => {
                write!(f, "counts must be finite, non-negative, not all 0")
            }
            Self::TooFewCategories => write!(f, "the test needs at least two categories"),
            Self::InvalidParameter => write!(f, "a parameter is out of range"),
            Self::KindMismatch => write!(f, "reference and current columns differ in kind"),
        }
    }
}

impl std::error::Error for DriftError {}

/// The finite values of `sample`, sorted; an error if there are none.
fn finite_sorted(sample: &[f64]) -> Result<Vec<f64>, DriftError> {
    let mut values: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
    if values.is_empty() {
        return Err(DriftError::EmptySample);
    }
    values.sort_by(f64::total_cmp);
    Ok(values)
}

fn same_len(left: &[f64], right: &[f64]) -> Result<(), DriftError> {
    if left.len() == right.len() {
        Ok(())
    } else {
        Err(DriftError::LengthMismatch { left: left.len(), right: right.len() })
    }
}

/// The total of `weights`, which must be finite, non-negative and not all 0.
fn weights_total(weights: &[f64]) -> Result<f64, DriftError> {
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(DriftError::InvalidDistribution);
    }
    let total: f64 = weights.iter().sum();
    if total > 0.0 { Ok(total) } else { Err(DriftError::InvalidDistribution) }
}

/// Population mean and standard deviation (ddof = 0, NumPy's `np.std`).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// Walks the distinct values `t` of two sorted samples in increasing order,
/// calling `step(t, i, j)` with `i`, `j` the counts of values `<= t` in each.
fn merged_steps(x: &[f64], y: &[f64], mut step: impl FnMut(f64, usize, usize)) {
    let (mut i, mut j) = (0, 0);
    while i < x.len() || j < y.len() {
        let next = |s: &[f64], k: usize| s.get(k).copied().unwrap_or(f64::INFINITY);
        let t = next(x, i).min(next(y, j));
        while x.get(i).is_some_and(|&u| u <= t) {
            i += 1;
        }
        while y.get(j).is_some_and(|&v| v <= t) {
            j += 1;
        }
        step(t, i, j);
    }
}

// --- Population stability index ---

/// What an empty bin's proportion becomes in [`psi_from_distributions`]
/// (Evidently's rule): `1e-4`, or a millionth of the smallest non-zero
/// proportion when that is itself at most `1e-4`. Applied to each side.
pub const PSI_EMPTY_BIN: f64 = 1e-4;

/// PSI of already-binned proportions: `sum((q - p) * ln(q / p))`, `p` the
/// reference's proportions and `q` the current's, bin by bin. The formula is
/// symmetric in `p` and `q`; the order matters only for which side an empty
/// bin is filled on (see [`PSI_EMPTY_BIN`]). Proportions are used as given.
/// `p = [0.5, 0.5]`, `q = [0.6, 0.4]` gives 0.040547.
pub fn psi_from_distributions(p: &[f64], q: &[f64]) -> Result<f64, DriftError> {
    same_len(p, q)?;
    let (p, q) = (fill_empty_bins(p)?, fill_empty_bins(q)?);
    Ok(p.iter().zip(&q).map(|(p, q)| (q - p) * (q / p).ln()).sum())
}

fn fill_empty_bins(proportions: &[f64]) -> Result<Vec<f64>, DriftError> {
    weights_total(proportions)?;
    let smallest = proportions.iter().copied().filter(|&x| x > 0.0).fold(f64::INFINITY, f64::min);
    let fill = if smallest <= PSI_EMPTY_BIN { smallest / 1e6 } else { PSI_EMPTY_BIN };
    Ok(proportions.iter().map(|&x| if x == 0.0 { fill } else { x }).collect())
}

/// NumPy's default (`linear`) quantile of a sorted, non-empty slice.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = (sorted.len() - 1) as f64 * q;
    let below = position.floor();
    let t = position - below;
    let i = below as usize;
    match (sorted.get(i), sorted.get(i + 1)) {
        // NumPy's lerp: from the nearer end, so t = 1 lands exactly on `b`.
        (Some(&a), Some(&b)) if t >= 0.5 => b - (b - a) * (1.0 - t),
        (Some(&a), Some(&b)) => a + (b - a) * t,
        _ => sorted[sorted.len() - 1],
    }
}

/// Cut points for `bins` reference-quantile bins: the reference's quantiles
/// at `k / bins` for `k = 1..bins` (NumPy linear interpolation), keeping only
/// those above the reference minimum and dropping duplicates, so ties can
/// leave fewer bins. The outer bins are open: `(-inf, c1)`, `[c1, c2)`, …,
/// `[c_last, +inf)`, so current values outside the reference range count.
pub fn reference_quantile_cuts(reference: &[f64], bins: usize) -> Result<Vec<f64>, DriftError> {
    if bins == 0 {
        return Err(DriftError::InvalidParameter);
    }
    let sorted = finite_sorted(reference)?;
    let step = 1.0 / bins as f64;
    let mut cuts: Vec<f64> = Vec::with_capacity(bins);
    for k in 1..bins {
        let cut = quantile_sorted(&sorted, k as f64 * step);
        if cut > sorted[0] && cuts.last().is_none_or(|&last| cut > last) {
            cuts.push(cut);
        }
    }
    Ok(cuts)
}

/// The share of the finite values of `sample` in each bin cut by `cuts`
/// (sorted ascending): `cuts.len() + 1` proportions, a value equal to a cut
/// falling in the bin above it.
pub fn binned_proportions(sample: &[f64], cuts: &[f64]) -> Result<Vec<f64>, DriftError> {
    let values = finite_sorted(sample)?;
    let mut counts = vec![0.0; cuts.len() + 1];
    for x in &values {
        counts[cuts.partition_point(|c| c <= x)] += 1.0;
    }
    let n = values.len() as f64;
    Ok(counts.into_iter().map(|c| c / n).collect())
}

/// PSI of a numeric column over `bins` reference-quantile bins
/// ([`reference_quantile_cuts`]), empty bins filled as [`PSI_EMPTY_BIN`] says.
/// Evidently's `psi` stattest instead cuts equal-width bins over the combined
/// range (NumPy's `histogram_bin_edges`), so its values differ from these.
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> Result<f64, DriftError> {
    let cuts = reference_quantile_cuts(reference, bins)?;
    psi_from_distributions(
        &binned_proportions(reference, &cuts)?,
        &binned_proportions(current, &cuts)?,
    )
}

// --- Kolmogorov-Smirnov ---

/// Largest sample for which [`ks_2samp`] computes the exact p-value: SciPy's
/// `method='auto'` is exact when `max(n, m) <= 10_000`.
pub const KS_EXACT_MAX_N: usize = 10_000;

/// How a KS p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

/// A two-sample KS test: `D = sup |F_ref - F_cur|` and its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    pub statistic: f64,
    pub p_value: f64,
    pub method: KsMethod,
}

/// Two-sided two-sample Kolmogorov-Smirnov test, as `ks_2samp(reference,
/// current)`. With both samples at most [`KS_EXACT_MAX_N`] values the p-value
/// is exact, `P(D >= d)` over all equally likely interleavings of the two
/// samples (ties are not corrected for, as in SciPy), and matches SciPy's to
/// rounding. Above that it is the Kolmogorov limit `K(sqrt(nm/(n+m)) d)`
/// ([`kolmogorov_sf`]); SciPy there evaluates the finite-n distribution
/// `kstwo.sf(d, round(nm/(n+m)))`, which differs by O(1/sqrt(n)) (for
/// n = m = 12 000, d = 0.0203: 0.01401 here, 0.01381 in SciPy).
pub fn ks_2samp(reference: &[f64], current: &[f64]) -> Result<KsResult, DriftError> {
    let (x, y) = (finite_sorted(reference)?, finite_sorted(current)?);
    let (n1, n2) = (x.len(), y.len());
    let g = gcd(n1, n2);
    let (a, b) = ((n2 / g) as i128, (n1 / g) as i128);
    // i/n1 - j/n2 = (i*a - j*b) / lcm: the gap in whole units of 1/lcm.
    let mut gap = 0i128;
    merged_steps(&x, &y, |_, i, j| gap = gap.max((i as i128 * a - j as i128 * b).abs()));
    let statistic = gap as f64 / ((n1 / g) as f64 * n2 as f64);
    if n1.max(n2) <= KS_EXACT_MAX_N {
        Ok(KsResult { statistic, p_value: ks_exact_sf(n1, n2, gap), method: KsMethod::Exact })
    } else {
        let en = n1 as f64 * n2 as f64 / (n1 + n2) as f64;
        let p_value = kolmogorov_sf(en.sqrt() * statistic);
        Ok(KsResult { statistic, p_value, method: KsMethod::Asymptotic })
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `P(D >= h / lcm)` for samples of `n1` and `n2`: the probability that a
/// uniformly random lattice path from (0, 0) to (n1, n2) touches a cell with
/// `|i*a - j*b| >= h`. Mass is pushed forward row by row through the cells
/// strictly inside the band and absorbed where it leaves, so the answer is a
/// sum of positive terms, accurate even when tiny. O(n1 * band width).
fn ks_exact_sf(n1: usize, n2: usize, h: i128) -> f64 {
    if h == 0 {
        return 1.0;
    }
    let g = gcd(n1, n2);
    let (a, b) = ((n2 / g) as i128, (n1 / g) as i128);
    let inside = |i: usize, j: usize| (i as i128 * a - j as i128 * b).abs() < h;
    // Columns j of row i inside the band: ceil((ia-h+1)/b) ..= floor((ia+h-1)/b).
    let band = |i: usize| {
        let centre = i as i128 * a;
        let lo = -(h - 1 - centre).div_euclid(b);
        let hi = (centre + h - 1).div_euclid(b);
        (lo.max(0) as usize, hi.min(n2 as i128) as usize)
    };
    let mut row = vec![0.0; n2 + 1];
    let mut next = vec![0.0; n2 + 1];
    row[0] = 1.0;
    let mut outside = 0.0;
    for i in 0..=n1 {
        let (lo, hi) = band(i);
        for j in lo..=hi {
            let mass = row[j];
            if mass == 0.0 {
                continue;
            }
            let (left1, left2) = ((n1 - i) as f64, (n2 - j) as f64);
            if left1 > 0.0 {
                let share = mass * left1 / (left1 + left2);
                if inside(i + 1, j) { next[j] += share } else { outside += share }
            }
            if left2 > 0.0 {
                let share = mass * left2 / (left1 + left2);
                if inside(i, j + 1) { row[j + 1] += share } else { outside += share }
            }
        }
        row.iter_mut().take(hi + 1).skip(lo).for_each(|m| *m = 0.0);
        std::mem::swap(&mut row, &mut next);
    }
    f64::min(outside, 1.0)
}

/// Survival function of the Kolmogorov distribution,
/// `K(x) = 2 * sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)`, as
/// `scipy.special.kolmogorov`. Below 1 it uses the equivalent theta-function
/// series for the CDF, `sqrt(2 pi)/x * sum_{k odd} exp(-k^2 pi^2 / (8 x^2))`.
/// 1 for `x <= 0`; NaN for NaN.
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let mut sum = 0.0;
    if x < 1.0 {
        let scale = -PI * PI / (8.0 * x * x);
        for k in (1..=21u32).step_by(2) {
            let term = (scale * f64::from(k * k)).exp();
            sum += term;
            if term <= f64::EPSILON * sum {
                break;
            }
        }
        return 1.0 - (2.0 * PI).sqrt() / x * sum;
    }
    let mut sign = 1.0;
    for k in 1..=100u32 {
        let term = (-2.0 * f64::from(k * k) * x * x).exp();
        sum += sign * term;
        if term <= f64::EPSILON * sum {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

// --- Wasserstein ---

/// Smallest reference standard deviation [`wasserstein_normalized`] divides
/// by (Evidently's `max(np.std(reference), 0.001)`): a constant reference
/// gives `1000 * distance`, 0 when the current sample is the same constant.
pub const WASSERSTEIN_MIN_STD: f64 = 0.001;

/// First Wasserstein distance between two 1-D samples,
/// `integral |F_ref(t) - F_cur(t)| dt`, as `scipy.stats.wasserstein_distance`.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<f64, DriftError> {
    let (u, v) = (finite_sorted(reference)?, finite_sorted(current)?);
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let mut total = 0.0;
    let mut previous: Option<(f64, usize, usize)> = None;
    merged_steps(&u, &v, |t, i, j| {
        if let Some((s, pi, pj)) = previous {
            total += (pi as f64 / nu - pj as f64 / nv).abs() * (t - s);
        }
        previous = Some((t, i, j));
    });
    Ok(total)
}

/// Evidently's normalized Wasserstein: [`wasserstein`] divided by the
/// reference's population standard deviation (ddof = 0, `np.std`), floored
/// at [`WASSERSTEIN_MIN_STD`].
pub fn wasserstein_normalized(reference: &[f64], current: &[f64]) -> Result<f64, DriftError> {
    let distance = wasserstein(reference, current)?;
    let (_, std) = mean_std(&finite_sorted(reference)?);
    Ok(distance / std.max(WASSERSTEIN_MIN_STD))
}

// --- Categorical distributions ---

/// Counts of two samples over the union of their categories, in key order.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignedCounts<K> {
    pub categories: Vec<K>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Aligns two category -> count maps over the union of their keys; a
/// category missing on one side counts 0 there.
pub fn align_counts<K: Ord + Clone>(
    reference: &BTreeMap<K, u64>,
    current: &BTreeMap<K, u64>,
) -> AlignedCounts<K> {
    let categories: Vec<K> = reference
        .keys()
        .chain(current.keys())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let counts = |m: &BTreeMap<K, u64>| -> Vec<f64> {
        categories.iter().map(|k| m.get(k).copied().unwrap_or(0) as f64).collect()
    };
    AlignedCounts { reference: counts(reference), current: counts(current), categories }
}

/// How often each value occurs.
pub fn count_categories<S: AsRef<str>>(values: &[S]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for v in values {
        *counts.entry(v.as_ref().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 { x * (x / y).ln() } else { 0.0 }
}

/// Jensen-Shannon distance (the square root of the divergence) between two
/// aligned count or proportion vectors, each normalized to sum to 1 first, as
/// `scipy.spatial.distance.jensenshannon(p, q, base)`: natural log for
/// `None`; Evidently's stattest uses `Some(2.0)`, which bounds it by 1.
/// For a numeric column, pass [`binned_proportions`] of both samples over
/// shared cuts (for instance [`reference_quantile_cuts`]).
pub fn jensen_shannon(p: &[f64], q: &[f64], base: Option<f64>) -> Result<f64, DriftError> {
    same_len(p, q)?;
    let (total_p, total_q) = (weights_total(p)?, weights_total(q)?);
    let mut divergence = 0.0;
    for (pi, qi) in p.iter().zip(q) {
        let (pi, qi) = (pi / total_p, qi / total_q);
        let m = (pi + qi) / 2.0;
        divergence += rel_entr(pi, m) + rel_entr(qi, m);
    }
    if let Some(base) = base {
        if !base.is_finite() || base <= 0.0 || base == 1.0 {
            return Err(DriftError::InvalidParameter);
        }
        divergence /= base.ln();
    }
    Ok((divergence / 2.0).max(0.0).sqrt())
}

/// A test statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// Pearson's chi-squared goodness of fit, as `scipy.stats.chisquare(observed,
/// expected)`: `sum((o - e)^2 / e)` with `k - 1` degrees of freedom. Like
/// SciPy, it assumes both total the same (not checked). A category expected
/// 0 but observed gives statistic +inf and p-value 0; one neither expected
/// nor observed adds nothing.
pub fn chi_square(observed: &[f64], expected: &[f64]) -> Result<TestResult, DriftError> {
    same_len(observed, expected)?;
    if observed.len() < 2 {
        return Err(DriftError::TooFewCategories);
    }
    weights_total(observed)?;
    weights_total(expected)?;
    let mut statistic = 0.0;
    for (o, e) in observed.iter().zip(expected) {
        if *e > 0.0 {
            statistic += (o - e) * (o - e) / e;
        } else if *o > 0.0 {
            statistic = f64::INFINITY;
        }
    }
    let dof = (observed.len() - 1) as f64;
    Ok(TestResult { statistic, p_value: gamma_q(dof / 2.0, statistic / 2.0) })
}

/// Evidently's chi-squared drift test on aligned counts: the current counts
/// observed against the reference's proportions scaled to the current total.
pub fn chi_square_drift(
    reference_counts: &[f64],
    current_counts: &[f64],
) -> Result<TestResult, DriftError> {
    same_len(reference_counts, current_counts)?;
    let scale = weights_total(current_counts)? / weights_total(reference_counts)?;
    let expected: Vec<f64> = reference_counts.iter().map(|c| c * scale).collect();
    chi_square(current_counts, &expected)
}

/// Two-proportion z-test with pooled variance (Evidently's `z` stattest):
/// `z = (p_ref - p_cur) / sqrt(P (1 - P) (1/n_ref + 1/n_cur))`, two-sided
/// normal p-value `erfc(|z| / sqrt 2)`. When the pooled share is 0 or 1 both
/// samples are the same constant: z = 0, p-value 1.
pub fn proportions_z_test(
    reference_hits: f64,
    reference_total: f64,
    current_hits: f64,
    current_total: f64,
) -> Result<TestResult, DriftError> {
    let valid =
        |hits: f64, total: f64| hits >= 0.0 && total > 0.0 && hits <= total && total.is_finite();
    if !valid(reference_hits, reference_total) || !valid(current_hits, current_total) {
        return Err(DriftError::InvalidDistribution);
    }
    let pooled = (reference_hits + current_hits) / (reference_total + current_total);
    if pooled <= 0.0 || pooled >= 1.0 {
        return Ok(TestResult { statistic: 0.0, p_value: 1.0 });
    }
    let spread = (pooled * (1.0 - pooled) * (1.0 / reference_total + 1.0 / current_total)).sqrt();
    let z = (reference_hits / reference_total - current_hits / current_total) / spread;
    // erfc(|z|/sqrt 2) = Q(1/2, z^2/2).
    Ok(TestResult { statistic: z, p_value: gamma_q(0.5, z * z / 2.0) })
}

// --- Special functions ---

/// Lanczos coefficients for g = 7, nine terms (relative error ~1e-15).
const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln Γ(x)` for `x > 0` (Lanczos; reflection below 1/2), as
/// `scipy.special.gammaln`. NaN for `x <= 0` or NaN.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x < 0.5 {
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let z = x - 1.0;
    let t = z + LANCZOS_G + 0.5;
    let series = LANCZOS
        .iter()
        .skip(1)
        .zip(1u32..)
        .fold(LANCZOS[0], |acc, (c, k)| acc + c / (z + f64::from(k)));
    0.5 * (2.0 * PI).ln() + (z + 0.5) * t.ln() - t + series.ln()
}

const GAMMA_MAX_TERMS: usize = 100_000;

/// Regularized upper incomplete gamma `Q(a, x) = Γ(a, x) / Γ(a)`, as
/// `scipy.special.gammaincc`: a power series for `P` when `x < a + 1`, else a
/// continued fraction (modified Lentz) for `Q` directly, so tiny upper tails
/// keep their relative accuracy. `a > 0`, `x >= 0`; NaN otherwise.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if !(a > 0.0 && x >= 0.0) {
        return f64::NAN;
    }
    if x < a + 1.0 { 1.0 - lower_series(a, x) } else { upper_fraction(a, x) }
}

/// Regularized lower incomplete gamma `P(a, x) = 1 - Q(a, x)`, as
/// `scipy.special.gammainc`. `a > 0`, `x >= 0`; NaN otherwise.
pub fn gamma_p(a: f64, x: f64) -> f64 {
    if !(a > 0.0 && x >= 0.0) {
        return f64::NAN;
    }
    if x < a + 1.0 { lower_series(a, x) } else { 1.0 - upper_fraction(a, x) }
}

/// `x^a e^-x / Γ(a)`, in logs.
fn ln_gamma_prefactor(a: f64, x: f64) -> f64 {
    a * x.ln() - x - ln_gamma(a)
}

/// `P(a, x) = x^a e^-x / Γ(a) * sum_n x^n / (a (a+1) ... (a+n))`.
fn lower_series(a: f64, x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let (mut term, mut sum, mut denominator) = (1.0 / a, 1.0 / a, a);
    for _ in 0..GAMMA_MAX_TERMS {
        denominator += 1.0;
        term *= x / denominator;
        sum += term;
        if term < sum * f64::EPSILON {
            break;
        }
    }
    sum * ln_gamma_prefactor(a, x).exp()
}

/// `Q(a, x) = x^a e^-x / Γ(a) * 1/(x+1-a - 1(1-a)/(x+3-a - 2(2-a)/(x+5-a - ...)))`.
fn upper_fraction(a: f64, x: f64) -> f64 {
    if x.is_infinite() {
        return 0.0;
    }
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut fraction = d;
    for i in 1..GAMMA_MAX_TERMS {
        let an = -(i as f64) * (i as f64 - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        fraction *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    fraction * ln_gamma_prefactor(a, x).exp()
}

mod verdict;
pub use verdict::*;

#[cfg(test)]
mod tests;
