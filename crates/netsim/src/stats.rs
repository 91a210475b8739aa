//! Measurements over a run: the one percentile every report and scenario test uses.

use core::cmp::Ordering;

/// A measured value: a total order to rank it by.
pub trait Sample: Copy {
    /// The order of two samples.
    fn order(a: &Self, b: &Self) -> Ordering;
}

impl Sample for f64 {
    fn order(a: &Self, b: &Self) -> Ordering {
        a.total_cmp(b)
    }
}

macro_rules! integer_samples {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn order(a: &Self, b: &Self) -> Ordering {
                a.cmp(b)
            }
        }
    )*};
}

integer_samples!(u8, u16, u32, u64, usize);

/// Nearest-rank percentile (`p` in 0..=100) of unsorted values, exact (no binning: a report stays
/// byte-identical while the engine under it changes); `None` when empty. Sorts `values`.
pub fn percentile<T: Sample>(values: &mut [T], p: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(T::order);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50.0));
        assert_eq!(percentile(&mut v, 99.0), Some(99.0));
        assert_eq!(percentile(&mut v, 100.0), Some(100.0));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut [3.0], 99.0), Some(3.0));
        assert_eq!(percentile::<f64>(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [4u32, 1, 3, 2], 50.0), Some(2));
    }
}
