//! The Pareto frontier of (cost, quality): the points no other point beats
//! on one axis without losing on the other. Lower cost and higher quality
//! are better; a point is dominated when another one costs no more, is no
//! worse, and is strictly better on at least one axis. Equal points do not
//! dominate each other, so both stay. Points with a non-finite coordinate
//! are never on the frontier.

/// Indices of the non-dominated points, by ascending cost (then
/// descending quality, then index).
pub fn pareto(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    let mut out = Vec::new();
    // Best quality among strictly cheaper points seen so far.
    let mut best_cheaper = f64::NEG_INFINITY;
    let mut i = 0;
    while i < order.len() {
        let cost = points[order[i]].0;
        // Sorted by descending quality within one cost: the group's first
        // point has its best quality.
        let group_best = points[order[i]].1;
        let mut j = i;
        while j < order.len() && points[order[j]].0 == cost {
            if points[order[j]].1 == group_best && group_best > best_cheaper {
                out.push(order[j]);
            }
            j += 1;
        }
        best_cheaper = best_cheaper.max(group_best);
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dominates(a: (f64, f64), b: (f64, f64)) -> bool {
        a.0 <= b.0 && a.1 >= b.1 && (a.0 < b.0 || a.1 > b.1)
    }

    #[test]
    fn a_dearer_and_worse_point_is_off_the_frontier() {
        let pts = [(1.0, 0.9), (2.0, 0.8), (0.5, 0.6), (3.0, 0.95)];
        assert_eq!(pareto(&pts), vec![2, 0, 3]);
    }

    #[test]
    fn equal_points_both_stay_and_nan_never_does() {
        let pts = [(1.0, 0.5), (1.0, 0.5), (f64::NAN, 1.0), (1.0, 0.4)];
        assert_eq!(pareto(&pts), vec![0, 1]);
    }

    proptest! {
        // Small integer grids make ties on either axis common.
        #[test]
        fn frontier_is_exactly_the_non_dominated_set(
            pts in proptest::collection::vec((0u8..6, 0u8..6), 0..25)
        ) {
            let pts: Vec<(f64, f64)> = pts.iter().map(|(c, q)| (f64::from(*c), f64::from(*q) / 5.0)).collect();
            let mut got = pareto(&pts);
            got.sort_unstable();
            let want: Vec<usize> = (0..pts.len())
                .filter(|&i| !pts.iter().any(|&p| dominates(p, pts[i])))
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn frontier_is_ordered_by_cost_with_rising_quality(
            pts in proptest::collection::vec((0.0f64..10.0, 0.0f64..1.0), 1..40)
        ) {
            let f = pareto(&pts);
            prop_assert!(!f.is_empty());
            for w in f.windows(2) {
                prop_assert!(pts[w[0]].0 <= pts[w[1]].0);
                prop_assert!(pts[w[0]].0 == pts[w[1]].0 || pts[w[0]].1 < pts[w[1]].1);
            }
        }
    }
}
