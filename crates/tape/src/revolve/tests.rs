use std::collections::BTreeSet;

use super::*;

/// Runs a schedule on symbolic states and checks every rule of [`Action`]: stores and
/// restores of the current state only, never more than the budget of snapshots, each
/// step reversed exactly once in order `T − 1, …, 0` from the state it starts at.
fn check_valid(plan: &Schedule) -> Result<(), String> {
    let (mut current, mut stored) = (Some(0usize), BTreeSet::new());
    let mut next = plan.steps();
    for (n, a) in plan.actions().enumerate() {
        let bad = |what: &str| Err(format!("action {n} {a:?}: {what}"));
        match a {
            Action::Store(i) => {
                if current != Some(i) || !stored.insert(i) {
                    return bad("stores a state not in hand, or twice");
                }
                if stored.len() > plan.snapshots() {
                    return bad("exceeds the snapshot budget");
                }
            }
            Action::Restore(i) if stored.contains(&i) => current = Some(i),
            Action::Restore(_) => return bad("restores a state never stored"),
            Action::Advance(k) => match current {
                Some(i) if k > 0 && i + k < plan.steps() => current = Some(i + k),
                _ => return bad("advances nothing, past the end, or from no state"),
            },
            Action::Reverse(i) => {
                if current != Some(i) || next == 0 || i != next - 1 {
                    return bad("reverses out of order or from the wrong state");
                }
                next = i;
                current = None;
            }
            Action::Forget(i) if stored.remove(&i) => {}
            Action::Forget(_) => return bad("forgets a state not stored"),
        }
    }
    if next != 0 {
        return Err(format!("steps below {next} were never reversed"));
    }
    Ok(())
}

/// The optimum by dynamic programming over every split, to check the closed form:
/// reversing `l` steps with `s` snapshots costs `min over m of m + t(l − m, s − 1) + t(m, s)`.
fn brute_force(max_steps: usize, max_snapshots: usize) -> Vec<Vec<u64>> {
    let mut t = vec![vec![0u64; max_snapshots + 1]; max_steps + 1];
    for l in 2..=max_steps {
        t[l][1] = (l * (l - 1) / 2) as u64;
        for s in 2..=max_snapshots {
            t[l][s] = (1..l)
                .map(|m| m as u64 + t[l - m][s - 1] + t[m][s])
                .min()
                .unwrap_or(0);
        }
    }
    t
}

#[test]
fn the_closed_form_is_the_optimum_over_every_split() {
    let t = brute_force(80, 9);
    for (l, row) in t.iter().enumerate().skip(1) {
        for (s, &best) in row.iter().enumerate().skip(1) {
            assert_eq!(optimal_advances(l, s), best, "T = {l}, s = {s}");
        }
    }
}

/// The property of the issue, exhaustively: for every `T ≤ 300` and every budget up to
/// `T + 1`, the schedule is valid, stays within its budget and advances exactly revolve's
/// optimum.
#[test]
fn every_schedule_up_to_300_steps_is_valid_and_optimal() {
    for steps in 0..=300 {
        for snapshots in 1..=steps + 1 {
            let plan = Schedule::new(steps, snapshots);
            if let Err(e) = check_valid(&plan) {
                panic!("T = {steps}, s = {snapshots}: {e}");
            }
            assert_eq!(
                plan.advances(),
                optimal_advances(steps, snapshots),
                "T = {steps}, s = {snapshots}"
            );
            assert!(plan.peak_snapshots() <= snapshots.max(1));
        }
    }
}

#[test]
fn long_loops_reach_the_optimum_within_budget() {
    for (steps, snapshots, expected) in [(10_000, 10, 57_624), (10_000, 100, 24_747)] {
        let plan = Schedule::new(steps, snapshots);
        check_valid(&plan).unwrap();
        assert_eq!(plan.advances(), expected);
        assert_eq!(optimal_advances(steps, snapshots), expected);
        assert_eq!(plan.peak_snapshots(), snapshots);
    }
}

#[test]
#[should_panic(expected = "at least one snapshot")]
fn no_snapshot_is_a_programmer_error() {
    Schedule::new(3, 0);
}
