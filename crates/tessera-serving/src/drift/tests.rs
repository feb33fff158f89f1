use super::*;

fn numbers(v: impl IntoIterator<Item = f64>) -> Column {
    Column::Numeric(v.into_iter().collect())
}

#[test]
fn rows_read_back_through_the_layout() {
    let layout = vec![
        InputColumn::Numeric { name: "age".into() },
        InputColumn::Categorical {
            name: "plan".into(),
            categories: vec!["free".into(), "pro".into()],
        },
    ];
    let mut s = Sample::default();
    s.push_row(&layout, &[30.0, 0.0, 1.0]);
    s.push_row(&layout, &[40.0, 0.0, 0.0]);
    assert_eq!(s.rows, 2);
    assert_eq!(s.columns["age"], numbers([30.0, 40.0]));
    assert_eq!(s.columns["plan"], Column::Categorical(vec!["pro".into(), "(other)".into()]));
    let mut raw = Sample::default();
    raw.push_row(&[], &[1.0, 2.0]);
    assert_eq!(raw.columns["features[1]"], numbers([2.0]));
}

#[test]
fn a_shifted_column_drifts_and_a_steady_one_does_not_in_both_modes() {
    let steady: Vec<f64> = (0..2000).map(|i| f64::from(i % 100)).collect();
    let reference = numbers(steady.iter().copied());
    let same = numbers(steady.iter().copied().rev().take(500));
    let shifted = numbers(steady.iter().map(|x| x + 40.0).take(500));
    for mode in [Mode::Evidently, Mode::Nannyml] {
        let calm = judge("x", "input", &reference, &same, mode);
        let moved = judge("x", "input", &reference, &shifted, mode);
        assert_eq!(
            (calm.drifted, moved.drifted),
            (Some(false), Some(true)),
            "{mode:?}: {calm:?} {moved:?}"
        );
        assert_eq!(moved.method, "wasserstein", "2000 reference rows: a distance");
    }
    // A small reference: Evidently's KS p-value.
    let small = numbers(steady.iter().copied().take(500));
    let ks = judge("x", "input", &small, &shifted, Mode::Evidently);
    assert_eq!((ks.method, ks.drifted), ("ks", Some(true)));
    assert!(ks.value.unwrap() < 1e-6);
    // Too few current values: no verdict.
    let few = judge("x", "input", &reference, &numbers([1.0, 2.0]), Mode::Evidently);
    assert_eq!((few.value, few.drifted), (None, None));
}

#[test]
fn embeddings_drift_when_a_classifier_tells_them_apart() {
    // 200 rows of 8 components from a seeded generator; the shifted
    // rows have components 0-1 moved by two standard deviations.
    let mut rng = tessera_training::rng::Rng(7);
    let mut rows = |n: usize, shift: f32| -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                (0..8).map(|d| rng.normal() as f32 + if d < 2 { shift } else { 0.0 }).collect()
            })
            .collect()
    };
    let reference = rows(200, 0.0);
    let (same, moved) = (rows(200, 0.0), rows(200, 2.0));
    let calm = embedding_drift(&reference, &same);
    assert_eq!(calm.drifted, Some(false), "{calm:?}");
    assert!((calm.value.unwrap() - 0.5).abs() < 0.1, "{calm:?}");
    let shifted = embedding_drift(&reference, &moved);
    assert_eq!(shifted.drifted, Some(true), "{shifted:?}");
    assert!(shifted.value.unwrap() > 0.9, "{shifted:?}");
    assert_eq!(embedding_drift(&reference, &moved[..3]).drifted, None);
    assert_eq!(spread(&vec!["t".to_owned(); 1200]).len(), 400);
}

#[test]
fn label_shares_that_move_drift() {
    let labels = |pos: usize, n: usize| {
        Column::Categorical(
            (0..n).map(|i| if i < pos { "pos" } else { "neg" }.to_owned()).collect(),
        )
    };
    let reference = labels(500, 1000);
    let calm = judge("prediction", "prediction", &reference, &labels(100, 200), Mode::Evidently);
    let moved = judge("prediction", "prediction", &reference, &labels(180, 200), Mode::Evidently);
    assert_eq!(calm.method, "z_test");
    assert_eq!((calm.drifted, moved.drifted), (Some(false), Some(true)), "{calm:?} {moved:?}");
}
