//! The one statistic every benchmark here reports: the median.

/// The median of `v` (the mean of the two middle values for an even count; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    median_of_sorted(&v)
}

/// [`median`] of values already sorted ascending (no copy, no second sort).
pub fn median_of_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
