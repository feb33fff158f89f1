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

// --- Evidently's default choice and verdicts ---

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

#[cfg(test)]
mod tests {
    //! Expected values from SciPy 1.17.1 / NumPy 2.4.6, regenerated by:
    //!
    //! ```python
    //! import numpy as np; from collections import Counter
    //! from scipy import stats, special; from scipy.spatial import distance
    //! rng = np.random.default_rng(7)  # A, B, C below, rounded to 4 places
    //! a = rng.normal(0, 1, 20).round(4); b = rng.normal(.5, 1, 25).round(4); c = rng.normal(.8, 1.2, 20).round(4)
    //! def f(n, mul, mod, scale=1.0, shift=0.0):  # `formula` below
    //!     return np.array([(i * mul % mod) / mod * scale + shift for i in range(n)])
    //! def psi(ref, cur, bins):
    //!     cuts = np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1]; cuts = np.unique(cuts[cuts > ref.min()])
    //!     p = np.bincount(np.searchsorted(cuts, ref, side='right'), minlength=len(cuts) + 1) / len(ref)
    //!     q = np.bincount(np.searchsorted(cuts, cur, side='right'), minlength=len(cuts) + 1) / len(cur)
    //!     for v in (p, q): m = v[v > 0].min(); v[v == 0] = m / 1e6 if m <= 1e-4 else 1e-4
    //!     return np.sum((q - p) * np.log(q / p))
    //! r300, c300, c200 = f(300, 37, 101), f(300, 53, 97, .9, .08), f(200, 53, 97, .9, .08)
    //! psi(a, b, 4); psi(r300, c300, 10)
    //! [stats.ks_2samp(x, y) for x, y in [(a, b), (a, c), (a, a + 3), (a, b + 3), (r300, c300), (r300, c200)]]
    //! rb, cb = f(12000, 7919, 10007), f(12000, 104729, 10009, .97, .02)
    //! d = stats.ks_2samp(rb, cb).statistic; special.kolmogorov(np.sqrt(6000) * d)
    //! w = stats.wasserstein_distance(a, b); w, w / np.std(a)
    //! x, y = np.array([30, 50, 20.]), np.array([40, 35, 25.])
    //! distance.jensenshannon(x, y), distance.jensenshannon(x, y, base=2), distance.jensenshannon([10, 0, 5], [3, 4, 8])
    //! stats.chisquare(y, x / x.sum() * y.sum())
    //! x2, y2 = np.array([120, 300, 80, 500.]), np.array([30, 70, 35, 65.]); stats.chisquare(y2, x2 / x2.sum() * y2.sum())
    //! P = 75 / 200; z = (.30 - .45) / np.sqrt(P * (1 - P) * (2 / 100)); z, 2 * stats.norm.sf(abs(z))
    //! [special.gammaincc(s, t) for s, t in [(.5, .1), (1, 2), (2.5, 1), (5, 12), (10, 3), (50, 80), (.5, 30), (100, 99.5)]]
    //! [special.kolmogorov(t) for t in [.2, .5, .8, 1, 1.36, 2, 3]]; [special.gammaln(t) for t in [.1, .5, 3.7, 25, 171.5]]
    //! v = np.array([.12, .10, .15, .11, .13, .09, .14, .12, .10, .11]); np.mean(v), np.std(v)
    //! kr = Counter(red=45, green=35, blue=20); kc = Counter(red=30, green=30, blue=40); keys = sorted(kr)
    //! ro, co = (np.array([k[c] for c in keys], float) for k in (kr, kc))
    //! stats.chisquare(co, ro * co.sum() / ro.sum()).pvalue, distance.jensenshannon(ro, co, base=2)
    //! r1200, c1200 = f(1200, 37, 101), f(1200, 53, 97, .9, .08)
    //! stats.wasserstein_distance(r1200, c1200) / np.std(r1200)
    //! ```
    use super::*;

    const A: [f64; 20] = [
        0.0012, 0.2987, -0.2741, -0.8906, -0.4547, -0.9916, 0.0601, 1.3402, -0.4922, -0.6205,
        0.4898, 0.3569, 0.1054, -0.9305, -0.0293, 0.6953, -1.3442, -0.4576, -1.9012, -1.2895,
    ];
    const B: [f64; 25] = [
        -1.3417, 0.2649, -0.7674, 0.7713, 0.6568, 0.3131, -2.0168, -0.0387, 0.4515, 0.6133,
        -1.0301, 0.0222, -0.4785, -0.3088, 1.5609, -0.3075, 0.4675, 1.3844, -0.0836, 0.3883,
        0.6105, 0.5638, -0.7251, 0.5761, 1.8588,
    ];
    const C: [f64; 20] = [
        -1.0566, 1.8313, 0.9432, 0.0302, 3.2005, 1.7147, -0.6391, 0.8894, 1.492, 0.5735, 1.6195,
        0.7202, 1.6007, 2.5262, -0.0108, 1.0438, 0.244, 0.9527, -0.6246, 0.1048,
    ];

    /// `(i * mul % modulus) / modulus * scale + shift` for `i in 0..n`.
    fn formula(n: usize, mul: usize, modulus: usize, scale: f64, shift: f64) -> Vec<f64> {
        (0..n).map(|i| (i * mul % modulus) as f64 / modulus as f64 * scale + shift).collect()
    }

    fn shifted(v: &[f64], by: f64) -> Vec<f64> {
        v.iter().map(|x| x + by).collect()
    }

    #[track_caller]
    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= 1e-6, "{actual} vs {expected}");
    }

    /// Relative, for values far below 1.
    #[track_caller]
    fn close_rel(actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= 1e-6 * expected.abs(), "{actual} vs {expected}");
    }

    #[test]
    fn psi_anchor_and_empty_bins() {
        let value = psi_from_distributions(&[0.5, 0.5], &[0.6, 0.4]).unwrap();
        close(value, 0.04054651081081642);
        assert!((value - 0.04055).abs() < 1e-5);
        // An empty current bin becomes 1e-4, the others stay as they are.
        let expected = (0.0001 - 0.5) * (0.0001f64 / 0.5).ln() + 0.5 * 2f64.ln();
        close(psi_from_distributions(&[0.5, 0.5], &[0.0, 1.0]).unwrap(), expected);
        assert_eq!(
            psi_from_distributions(&[1.0], &[0.5, 0.5]),
            Err(DriftError::LengthMismatch { left: 1, right: 2 })
        );
        assert_eq!(psi_from_distributions(&[0.0], &[1.0]), Err(DriftError::InvalidDistribution));
    }

    #[test]
    fn psi_on_reference_quantile_bins() {
        close(psi(&A, &B, 4).unwrap(), 0.4519966815053167);
        let (r, c) = (formula(300, 37, 101, 1.0, 0.0), formula(300, 53, 97, 0.9, 0.08));
        close(psi(&r, &c, 10).unwrap(), 0.12659979471047103);
        assert_eq!(reference_quantile_cuts(&[1.0, 1.0, 1.0, 2.0], 4).unwrap(), vec![1.25]);
        assert_eq!(psi(&A, &B, 0), Err(DriftError::InvalidParameter));
        assert_eq!(psi(&[f64::NAN], &B, 4), Err(DriftError::EmptySample));
    }

    #[test]
    fn ks_exact_small_samples() {
        let cases: [(&[f64], Vec<f64>, f64, f64); 4] = [
            (&A, B.to_vec(), 0.33, 0.14314352365927918),
            (&A, C.to_vec(), 0.55, 0.00396729438660086),
            (&A, shifted(&A, 3.0), 0.95, 5.803555641539872e-10),
            (&A, shifted(&B, 3.0), 0.96, 1.3249751251955757e-11),
        ];
        for (reference, current, d, p) in cases {
            let r = ks_2samp(reference, &current).unwrap();
            assert_eq!(r.method, KsMethod::Exact);
            close(r.statistic, d);
            close_rel(r.p_value, p);
        }
    }

    #[test]
    fn ks_exact_hundreds_with_ties() {
        let r = formula(300, 37, 101, 1.0, 0.0);
        let equal = ks_2samp(&r, &formula(300, 53, 97, 0.9, 0.08)).unwrap();
        let unequal = ks_2samp(&r, &formula(200, 53, 97, 0.9, 0.08)).unwrap();
        assert_eq!((equal.method, unequal.method), (KsMethod::Exact, KsMethod::Exact));
        close(equal.statistic, 0.09);
        close(equal.p_value, 0.17609362474930004);
        close(unequal.statistic, 0.09);
        close(unequal.p_value, 0.2740590678125853);
    }

    #[test]
    fn ks_asymptotic_above_ten_thousand() {
        let r = formula(12_000, 7919, 10_007, 1.0, 0.0);
        let c = formula(12_000, 104_729, 10_009, 0.97, 0.02);
        let ks = ks_2samp(&r, &c).unwrap();
        assert_eq!(ks.method, KsMethod::Asymptotic);
        close(ks.statistic, 0.020333333333333335);
        // kolmogorov(sqrt(6000) D); scipy's own ks_2samp p-value is 0.013814792179679633.
        close(ks.p_value, 0.014007162174331326);
    }

    #[test]
    fn ks_edges() {
        let with_nan: Vec<f64> = A.iter().copied().chain([f64::NAN, f64::INFINITY]).collect();
        assert_eq!(ks_2samp(&with_nan, &B), ks_2samp(&A, &B));
        assert_eq!(ks_2samp(&[], &B), Err(DriftError::EmptySample));
        let same = ks_2samp(&A, &A).unwrap();
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
    }

    #[test]
    fn kolmogorov_matches_scipy() {
        let expected = [
            (0.2, 0.999999999999495),
            (0.5, 0.9639452436648751),
            (0.8, 0.5441424115741981),
            (1.0, 0.26999967167735456),
            (1.36, 0.049485876755377876),
            (2.0, 0.0006709252557796953),
            (3.0, 3.045995948942526e-08),
        ];
        for (x, k) in expected {
            close_rel(kolmogorov_sf(x), k);
        }
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(f64::NAN).is_nan());
    }

    #[test]
    fn wasserstein_plain_normalized_and_constant_reference() {
        close(wasserstein(&A, &B).unwrap(), 0.46187599999999995);
        close(wasserstein_normalized(&A, &B).unwrap(), 0.6066217890555156);
        let constant = [2.0; 10];
        let current = [2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0];
        close(wasserstein_normalized(&constant, &current).unwrap(), 500.0);
        assert_eq!(wasserstein_normalized(&constant, &constant), Ok(0.0));
        assert_eq!(wasserstein(&A, &[f64::NAN]), Err(DriftError::EmptySample));
    }

    #[test]
    fn jensen_shannon_matches_scipy() {
        let (x, y) = ([30.0, 50.0, 20.0], [40.0, 35.0, 25.0]);
        close(jensen_shannon(&x, &y, None).unwrap(), 0.10783258918194409);
        close(jensen_shannon(&x, &y, Some(2.0)).unwrap(), 0.12952013926389636);
        close(
            jensen_shannon(&[10.0, 0.0, 5.0], &[3.0, 4.0, 8.0], None).unwrap(),
            0.41272031750134686,
        );
        assert_eq!(jensen_shannon(&x, &x, None), Ok(0.0));
        assert_eq!(jensen_shannon(&x, &y, Some(1.0)), Err(DriftError::InvalidParameter));
        assert_eq!(
            jensen_shannon(&x, &[-1.0, 1.0, 1.0], None),
            Err(DriftError::InvalidDistribution)
        );
    }

    #[test]
    fn align_counts_over_the_union() {
        let r = count_categories(&["a", "b", "a"]);
        let c = count_categories(&["c", "a"]);
        let aligned = align_counts(&r, &c);
        assert_eq!(aligned.categories, ["a", "b", "c"]);
        assert_eq!(
            (aligned.reference, aligned.current),
            (vec![2.0, 1.0, 0.0], vec![1.0, 0.0, 1.0])
        );
    }

    #[test]
    fn chi_square_matches_scipy() {
        let t = chi_square_drift(&[30.0, 50.0, 20.0], &[40.0, 35.0, 25.0]).unwrap();
        close(t.statistic, 9.083333333333334);
        close(t.p_value, 0.010655632358543929);
        let t = chi_square_drift(&[120.0, 300.0, 80.0, 500.0], &[30.0, 70.0, 35.0, 65.0]).unwrap();
        close(t.statistic, 37.97916666666667);
        close_rel(t.p_value, 2.8553264710985353e-08);
        let unseen = chi_square(&[5.0, 5.0, 1.0], &[5.5, 5.5, 0.0]).unwrap();
        assert_eq!((unseen.statistic, unseen.p_value), (f64::INFINITY, 0.0));
        assert_eq!(chi_square(&[1.0], &[1.0]), Err(DriftError::TooFewCategories));
    }

    #[test]
    fn proportions_z_test_matches_scipy_normal() {
        let t = proportions_z_test(30.0, 100.0, 45.0, 100.0).unwrap();
        close(t.statistic, -2.1908902300206647);
        close(t.p_value, 0.02845973691631055);
        assert_eq!(proportions_z_test(0.0, 10.0, 0.0, 5.0).unwrap().p_value, 1.0);
        assert_eq!(proportions_z_test(11.0, 10.0, 0.0, 5.0), Err(DriftError::InvalidDistribution));
    }

    #[test]
    fn incomplete_and_log_gamma_match_scipy() {
        let q = [
            (0.5, 0.1, 0.6547208460185768),
            (1.0, 2.0, 0.1353352832366127),
            (2.5, 1.0, 0.8491450360846096),
            (5.0, 12.0, 0.007600390681066992),
            (10.0, 3.0, 0.9988975118698845),
            (50.0, 80.0, 0.0001307839765914092),
            (0.5, 30.0, 9.485737571073857e-15),
            (100.0, 99.5, 0.5066733396800365),
        ];
        for (a, x, expected) in q {
            close_rel(gamma_q(a, x), expected);
            close(gamma_p(a, x), 1.0 - expected);
        }
        let ln = [
            (0.1, 2.252712651734206),
            (0.5, 0.5723649429247),
            (3.7, 1.428072326665388),
            (25.0, 54.78472939811232),
            (171.5, 709.1431630309283),
        ];
        for (x, expected) in ln {
            close_rel(ln_gamma(x), expected);
        }
        assert_eq!((gamma_q(2.0, 0.0), gamma_q(2.0, f64::INFINITY)), (1.0, 0.0));
        assert!(
            gamma_q(0.0, 1.0).is_nan() && gamma_q(1.0, -1.0).is_nan() && ln_gamma(0.0).is_nan()
        );
    }

    #[test]
    fn evidently_default_choice() {
        use ColumnKind::{Categorical, Numeric};
        use DriftMethod::*;
        let cases = [
            (Numeric, 1000, 100, KolmogorovSmirnov, 0.05),
            (Numeric, 1001, 100, WassersteinNormalized, 0.1),
            (Numeric, 500, 5, ChiSquare, 0.05),
            (Numeric, 500, 2, ProportionZ, 0.05),
            (Numeric, 5000, 4, JensenShannon, 0.1),
            (Categorical, 1000, 3, ChiSquare, 0.05),
            (Categorical, 1000, 2, ProportionZ, 0.05),
            (Categorical, 1001, 50, JensenShannon, 0.1),
        ];
        for (kind, rows, unique, method, threshold) in cases {
            assert_eq!(default_test(kind, rows, unique), DriftTest { method, threshold });
        }
        assert!(KolmogorovSmirnov.is_drift(0.05, 0.05) && !ChiSquare.is_drift(0.05, 0.05));
        assert!(JensenShannon.is_drift(0.1, 0.1) && !WassersteinNormalized.is_drift(0.09, 0.1));
    }

    fn categories(red: usize, green: usize, blue: usize, times: usize) -> Column {
        let one = [("red", red), ("green", green), ("blue", blue)]
            .into_iter()
            .flat_map(|(name, n)| std::iter::repeat_n(name, n * times));
        Column::Categorical(one.map(str::to_owned).collect())
    }

    #[test]
    fn column_drift_by_default_test() {
        let chi = column_drift(&categories(45, 35, 20, 1), &categories(30, 30, 40, 1)).unwrap();
        assert_eq!((chi.method, chi.drifted), (DriftMethod::ChiSquare, true));
        close_rel(chi.value, 2.6074368808253592e-06);
        let js = column_drift(&categories(45, 35, 20, 12), &categories(30, 30, 40, 12)).unwrap();
        assert_eq!((js.method, js.drifted), (DriftMethod::JensenShannon, true));
        close(js.value, 0.19181594025406648);
        let numeric = |v: &[f64]| Column::Numeric(v.to_vec());
        let ks = column_drift(&numeric(&A), &numeric(&C)).unwrap();
        assert_eq!(
            (ks.method, ks.drifted, ks.threshold),
            (DriftMethod::KolmogorovSmirnov, true, 0.05)
        );
        close(ks.value, 0.00396729438660086);
        assert!(!column_drift(&numeric(&A), &numeric(&B)).unwrap().drifted);
        let (r, c) = (formula(1200, 37, 101, 1.0, 0.0), formula(1200, 53, 97, 0.9, 0.08));
        let w = column_drift(&numeric(&r), &numeric(&c)).unwrap();
        assert_eq!((w.method, w.drifted), (DriftMethod::WassersteinNormalized, true));
        close(w.value, 0.11713128417839015);
        let bits =
            |ones: usize| (0..100).map(|i| f64::from(u8::from(i < ones))).collect::<Vec<_>>();
        let z = column_drift(&numeric(&bits(30)), &numeric(&bits(45))).unwrap();
        assert_eq!((z.method, z.drifted), (DriftMethod::ProportionZ, true));
        close(z.value, 0.02845973691631055);
        assert_eq!(
            column_drift(&numeric(&A), &categories(1, 1, 1, 1)),
            Err(DriftError::KindMismatch)
        );
        assert_eq!(
            column_drift(&categories(0, 0, 0, 1), &categories(1, 1, 1, 1)),
            Err(DriftError::EmptySample)
        );
    }

    #[test]
    fn dataset_verdict_by_share() {
        let column = |drifted| ColumnDrift {
            method: DriftMethod::JensenShannon,
            value: 0.0,
            threshold: 0.1,
            drifted,
        };
        let columns = [column(true), column(false), column(true)];
        let verdict = dataset_drift(&columns, DEFAULT_DRIFT_SHARE).unwrap();
        assert_eq!((verdict.columns, verdict.drifted_columns, verdict.drifted), (3, 2, true));
        assert!(!dataset_drift(&columns, 0.7).unwrap().drifted);
        assert!(dataset_drift(&columns[..2], 0.5).unwrap().drifted);
        assert_eq!(dataset_drift(&[], 0.5), Err(DriftError::InvalidParameter));
        assert_eq!(dataset_drift(&columns, 1.5), Err(DriftError::InvalidParameter));
    }

    #[test]
    fn nannyml_bounds_and_chunks() {
        let values = [0.12, 0.10, 0.15, 0.11, 0.13, 0.09, 0.14, 0.12, 0.10, 0.11];
        let b = reference_bounds(&values, NANNYML_STD_MULTIPLIER).unwrap();
        close(b.mean, 0.11700000000000002);
        close(b.std, 0.017916472867168916);
        close(b.lower, 0.06325058139849327);
        close(b.upper, 0.17074941860150677);
        assert!(b.exceeds_upper(0.171) && !b.exceeds_upper(0.17) && b.is_outside(0.06));
        let with_nan: Vec<f64> = values.iter().copied().chain([f64::NAN]).collect();
        assert_eq!(reference_bounds(&with_nan, 3.0), Ok(b));
        assert_eq!(reference_bounds(&values, -1.0), Err(DriftError::InvalidParameter));
        let sample: Vec<usize> = (0..10).collect();
        let sizes: Vec<usize> = split_chunks(&sample, 3).unwrap().iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [4, 3, 3]);
        assert_eq!(split_chunks(&sample, 3).unwrap().concat(), sample);
        assert_eq!(split_chunks(&sample, 11), Err(DriftError::InvalidParameter));
        assert_eq!(split_chunks(&sample, 0), Err(DriftError::InvalidParameter));
    }
}
