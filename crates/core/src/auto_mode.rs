//! AUTO refresh mode's choice between a differential and a full refresh: a differential
//! refresh costs in proportion to the pending change, a full one in proportion to the sources,
//! so AUTO refreshes in full once a source's pending change rows exceed a fraction of its rows.

/// How many change rows of a source with `source_rows` rows (an estimate; `None` when
/// unknown) to count before the change is known to exceed `max_ratio` of it: the refresh
/// counts at most this many and goes FULL when it reaches it. `None`: never switch (the size
/// of the source is unknown).
pub fn count_limit(source_rows: Option<f64>, max_ratio: f64) -> Option<i64> {
    let rows = source_rows.filter(|r| r.is_finite() && *r >= 0.0)?;
    let ratio = if max_ratio.is_finite() && max_ratio >= 0.0 {
        max_ratio
    } else {
        return None;
    };
    let allowed = (rows * ratio).floor();
    if allowed >= i64::MAX as f64 - 1.0 {
        return None;
    }
    Some(allowed as i64 + 1)
}

/// The change rows to compare with `limit` when an earlier count found `known` of them,
/// counting up to `known_cap`: `known` itself when it is below the cap (it is exact), `limit`
/// when the cap already reaches it; `None` when the rows must be counted up to `limit`.
pub fn counted_already(known: i64, known_cap: i64, limit: i64) -> Option<i64> {
    if known < known_cap || limit <= known_cap {
        Some(known.min(limit))
    } else {
        None
    }
}

/// Why a refresh goes FULL when `counted` change rows were found with limit `limit`, or `None`
/// when the change is within the ratio.
pub fn full_reason(
    source: &str,
    counted: i64,
    limit: i64,
    source_rows: f64,
    max_ratio: f64,
) -> Option<String> {
    (counted >= limit).then(|| {
        format!(
            "more than {limit_minus_one} pending change rows on {source} (about {rows} rows; \
             pg_trickle.differential_max_change_ratio = {max_ratio})",
            limit_minus_one = limit - 1,
            rows = source_rows.round() as i64,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_one_past_the_allowed_change() {
        assert_eq!(count_limit(Some(1000.0), 0.1), Some(101));
        assert_eq!(count_limit(Some(0.0), 0.1), Some(1));
        assert_eq!(count_limit(Some(15.0), 0.1), Some(2));
    }

    #[test]
    fn unknown_sizes_and_bad_ratios_never_switch() {
        assert_eq!(count_limit(None, 0.1), None);
        assert_eq!(count_limit(Some(-1.0), 0.1), None);
        assert_eq!(count_limit(Some(f64::NAN), 0.1), None);
        assert_eq!(count_limit(Some(1000.0), f64::INFINITY), None);
        assert_eq!(count_limit(Some(1e300), 1e6), None);
    }

    #[test]
    fn an_earlier_count_decides_unless_it_stopped_below_the_limit() {
        // exact (below the cap): compared as it is, within or beyond the limit
        assert_eq!(counted_already(40, 1000, 101), Some(40));
        assert_eq!(counted_already(400, 1000, 101), Some(101));
        assert_eq!(counted_already(400, 1000, 5000), Some(400));
        // stopped at the cap: enough when the limit is not above it
        assert_eq!(counted_already(1000, 1000, 1000), Some(1000));
        assert_eq!(counted_already(1000, 1000, 101), Some(101));
        assert_eq!(counted_already(1000, 1000, 1001), None);
        assert_eq!(counted_already(1000, 1000, 100_001), None);
        // whatever is returned leads to the decision a full count would
        for known_total in [0i64, 1, 99, 100, 101, 999, 1000, 1001, 5000, 200_000] {
            for limit in [1i64, 101, 1000, 1001, 100_001] {
                let known = known_total.min(1000);
                if let Some(counted) = counted_already(known, 1000, limit) {
                    assert_eq!(
                        counted >= limit,
                        known_total.min(limit) >= limit,
                        "{known_total} rows, limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_reason_names_the_source_and_the_setting() {
        assert_eq!(full_reason("public.t", 100, 101, 1000.0, 0.1), None);
        let reason = full_reason("public.t", 101, 101, 1000.0, 0.1).expect("over the limit");
        assert!(
            reason.contains("more than 100 pending change rows on public.t"),
            "{reason}"
        );
        assert!(reason.contains("about 1000 rows"), "{reason}");
        assert!(
            reason.contains("differential_max_change_ratio = 0.1"),
            "{reason}"
        );
    }
}
