//! Several `--rounds` as one report: each figure the median of the round medians, every
//! round's Keel/Linux ratio kept.

use super::{Figure, Side, Target};

/// Targets of several rounds as one list, each with every round's ratio.
pub fn merge_targets(rounds: Vec<Vec<Target>>) -> Vec<Target> {
    let Some(first) = rounds.first() else { return vec![] };
    (0..first.len())
        .map(|i| Target {
            rounds: rounds.iter().map(|r| r[i].rounds[0]).collect(),
            ..first[i].clone()
        })
        .collect()
}

/// The median of `v` (upper median for an even count), `None` if empty.
fn median(mut v: Vec<u64>) -> Option<u64> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// One side over all rounds: median of the round medians and p99s, all samples, every
/// round's median in the source; missing only if no round had the figure.
fn merge_sides(rounds: Vec<Side>) -> Side {
    if rounds.len() == 1 {
        return rounds.into_iter().next().unwrap_or_default();
    }
    let present: Vec<&Side> = rounds.iter().filter(|s| s.median.is_some()).collect();
    let Some(first) = present.first() else { return rounds.into_iter().next().unwrap_or_default() };
    let per_round: Vec<String> =
        rounds.iter().map(|s| s.median.map_or_else(|| "—".into(), |m| m.to_string())).collect();
    Side {
        median: median(present.iter().filter_map(|s| s.median).collect()),
        p99: median(present.iter().filter_map(|s| s.p99).collect()),
        n: Some(present.iter().filter_map(|s| s.n).sum()),
        samples: present.iter().flat_map(|s| s.samples.iter().copied()).collect(),
        source: format!(
            "{}; median of {} rounds: {}",
            first.source,
            rounds.len(),
            per_round.join(", ")
        ),
        missing: None,
    }
}

/// Figures of several rounds (same list each round) as one list: see [`merge_sides`].
pub fn merge_rounds(rounds: Vec<Vec<Figure>>) -> Vec<Figure> {
    let Some(first) = rounds.first() else { return vec![] };
    (0..first.len())
        .map(|i| {
            let f = &rounds[0][i];
            let round_ratios = rounds.iter().filter_map(|r| r[i].ratio()).collect();
            Figure {
                keel: merge_sides(rounds.iter().map(|r| r[i].keel.clone()).collect()),
                linux: merge_sides(rounds.iter().map(|r| r[i].linux.clone()).collect()),
                round_ratios,
                ..f.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Accel;

    fn side(median: Option<u64>, p99: u64) -> Side {
        match median {
            Some(m) => Side {
                median: Some(m),
                p99: Some(p99),
                n: Some(1000),
                samples: vec![m],
                source: "src".into(),
                missing: None,
            },
            None => Side::missing("did not run"),
        }
    }

    fn fig(keel: Option<u64>, linux: Option<u64>) -> Figure {
        Figure {
            metric: "m",
            unit: "cycles",
            mode: "xapic",
            smp: 2,
            accel: Accel::Tcg,
            keel: side(keel, 9),
            linux: side(linux, 9),
            round_ratios: vec![],
        }
    }

    #[test]
    fn rounds_merge_to_the_median_of_medians_with_per_round_ratios() {
        let merged = merge_rounds(vec![
            vec![fig(Some(10), Some(40))],
            vec![fig(Some(30), Some(50))],
            vec![fig(None, Some(20))],
        ]);
        let f = &merged[0];
        assert_eq!(f.keel.median, Some(30), "upper median of 10, 30");
        assert_eq!(f.linux.median, Some(40));
        assert_eq!(f.keel.n, Some(2000));
        assert_eq!(f.keel.samples, [10, 30]);
        assert!(f.keel.source.ends_with("median of 3 rounds: 10, 30, —"), "{}", f.keel.source);
        assert_eq!(f.round_ratios, [0.25, 0.6]);
    }

    #[test]
    fn targets_keep_every_round_and_judge_the_median() {
        let t = |r: Option<f64>| vec![Target { what: "x".into(), limit: 0.5, rounds: vec![r] }];
        let merged = merge_targets(vec![t(Some(0.4)), t(None), t(Some(0.7)), t(Some(0.45))]);
        assert_eq!(merged[0].rounds, [Some(0.4), None, Some(0.7), Some(0.45)]);
        assert_eq!(merged[0].median(), Some(0.45));
        assert_eq!(merged[0].met(), Some(true));
        let missing = merge_targets(vec![t(None)]);
        assert_eq!(missing[0].met(), None);
    }

    #[test]
    fn a_figure_missing_in_every_round_stays_missing_and_one_round_is_unchanged() {
        let merged = merge_rounds(vec![vec![fig(None, Some(1))], vec![fig(None, Some(2))]]);
        assert_eq!(merged[0].keel.missing.as_deref(), Some("did not run"));
        let single = merge_rounds(vec![vec![fig(Some(7), Some(14))]]);
        assert_eq!(single[0].keel.source, "src");
        assert_eq!(single[0].round_ratios, [0.5]);
    }
}
