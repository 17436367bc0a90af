//! Binomial checkpointing (Griewank's *revolve*): the schedule that reverses a time loop
//! of `T` steps while storing at most `s` states, with the fewest recomputed steps.
//!
//! Differentiating `x_{t+1} = f(x_t)` for `t < T` on a plain tape keeps every step's
//! intermediates, so memory grows with `T`. Keeping only `s` snapshots of the state and
//! recomputing the rest from the nearest one costs extra forward steps; revolve places the
//! snapshots so that this cost is the least possible. With `β(s, r) = C(s + r, s)` (the
//! most steps `s` snapshots can reverse when each step is advanced at most `r` times) and
//! `r` the least repetition number with `β(s, r) ≥ T`, the minimum number of untaped
//! forward steps ("advances") is
//!
//! ```text
//! t(T, s) = r·T − β(s + 1, r − 1)
//! ```
//!
//! (Griewank, *Achieving logarithmic growth of temporal and spatial complexity in reverse
//! automatic differentiation*, 1992; Griewank & Walther, *Algorithm 799: revolve*, 2000).
//! Each step is also evaluated once on a tape when it is reversed, as on a plain tape, so
//! `t(T, s)` is exactly the work added over a plain tape. `s` counts the snapshot of the
//! initial state. This module is the schedule only; [`time_loop`](crate::time_loop) runs it.
//!
//! ```
//! use retrograd_tape::revolve::{Action, Schedule, optimal_advances};
//! let plan = Schedule::new(4, 2);
//! assert_eq!(plan.advances(), optimal_advances(4, 2));
//! // The last step is reversed first, from the state the schedule advanced to.
//! let mut moves = plan.actions();
//! let first = moves.find(|a| matches!(a, Action::Reverse(_)));
//! assert_eq!(first, Some(Action::Reverse(3)));
//! ```

/// One move of a schedule over the states `x_0 … x_T` of a time loop. The "current" state
/// is the one the loop holds in hand; snapshots are the states kept aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep the current state, `x_i`, as a snapshot.
    Store(usize),
    /// Make snapshot `x_i` the current state.
    Restore(usize),
    /// Step the current state forward `n` steps without a tape.
    Advance(usize),
    /// Evaluate step `i` (`x_i → x_{i+1}`) on a tape from the current state `x_i` and pull
    /// the cotangent of `x_{i+1}` back to `x_i` (and to the parameters). Steps are reversed
    /// in order `T − 1, …, 0`; the current state is used up.
    Reverse(usize),
    /// Drop snapshot `x_i`.
    Forget(usize),
}

/// Revolve's schedule for `steps` steps with at most `snapshots` stored states. It is a
/// recipe, not a list: [`actions`](Schedule::actions) generates the moves one by one in
/// memory that grows with the number of snapshots, not with the number of steps.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    steps: usize,
    snapshots: usize,
}

impl Schedule {
    /// The optimal schedule: `Store(0)` first, then advances, stores and reversals whose
    /// advances add up to [`optimal_advances`]`(steps, snapshots)`.
    ///
    /// # Panics
    /// When `snapshots` is 0 (the initial state has to be kept somewhere).
    pub fn new(steps: usize, snapshots: usize) -> Self {
        assert!(
            snapshots >= 1,
            "revolve: a schedule needs at least one snapshot (the initial state's), got 0"
        );
        Schedule { steps, snapshots }
    }

    /// The number of steps of the loop.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The snapshot budget it was built for.
    pub fn snapshots(&self) -> usize {
        self.snapshots
    }

    /// The moves, in order.
    pub fn actions(&self) -> Actions {
        let mut actions = Actions {
            tasks: Vec::new(),
            current: Some(0),
            queue: Default::default(),
        };
        if self.steps > 0 {
            actions.queue.push_back(Action::Store(0));
            actions.tasks.push(Task::Reverse {
                start: 0,
                len: self.steps,
                free: self.snapshots,
            });
        }
        actions
    }

    /// The untaped forward steps the schedule takes (the work beyond a plain tape's),
    /// counted by running through it.
    pub fn advances(&self) -> u64 {
        self.actions()
            .map(|a| match a {
                Action::Advance(n) => n as u64,
                _ => 0,
            })
            .sum()
    }

    /// The most snapshots held at once, counted by running through the schedule.
    pub fn peak_snapshots(&self) -> usize {
        let (mut held, mut peak) = (0usize, 0usize);
        for a in self.actions() {
            match a {
                Action::Store(_) => held += 1,
                Action::Forget(_) => held -= 1,
                _ => {}
            }
            peak = peak.max(held);
        }
        peak
    }
}

/// What is left to do while a schedule runs.
#[derive(Clone, Debug)]
enum Task {
    /// Reverse steps `start .. start + len`, snapshot `start` being stored, with `free`
    /// snapshots at most (that one included).
    Reverse {
        start: usize,
        len: usize,
        free: usize,
    },
    /// Reverse steps `start .. start + len` from snapshot `start` with no snapshot to
    /// spare: the last one first, each advanced to from `start`.
    Sweep {
        start: usize,
        len: usize,
    },
    Forget(usize),
}

/// The moves of a [`Schedule`], generated as they are needed (a stack of pending tasks
/// and at most three moves queued).
#[derive(Clone, Debug)]
pub struct Actions {
    tasks: Vec<Task>,
    /// The state in hand, if it is a snapshot's.
    current: Option<usize>,
    queue: std::collections::VecDeque<Action>,
}

impl Iterator for Actions {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        while self.queue.is_empty() {
            match self.tasks.pop()? {
                Task::Forget(i) => self.queue.push_back(Action::Forget(i)),
                Task::Sweep { start, len } => self.sweep(start, len),
                Task::Reverse { start, len, free } => self.reverse(start, len, free),
            }
        }
        self.queue.pop_front()
    }
}

impl Actions {
    /// Moves from snapshot `start` (restored unless in hand) to state `to`.
    fn go(&mut self, start: usize, to: usize) {
        if self.current != Some(start) {
            self.queue.push_back(Action::Restore(start));
        }
        if to > start {
            self.queue.push_back(Action::Advance(to - start));
        }
        self.current = None;
    }

    /// The last step of a sweep; the rest is pushed back.
    fn sweep(&mut self, start: usize, len: usize) {
        if len > 1 {
            self.tasks.push(Task::Sweep {
                start,
                len: len - 1,
            });
        }
        self.go(start, start + len - 1);
        self.queue.push_back(Action::Reverse(start + len - 1));
    }

    /// One reversal task: a sweep when it is a single step or no snapshot is free, else
    /// split at revolve's point and pushed back as two tasks.
    fn reverse(&mut self, start: usize, len: usize, free: usize) {
        if len == 1 || free == 1 {
            return self.sweep(start, len);
        }
        let split = start + split_point(len, free);
        self.go(start, split);
        self.queue.push_back(Action::Store(split));
        self.current = Some(split);
        self.tasks.push(Task::Reverse {
            start,
            len: split - start,
            free,
        });
        self.tasks.push(Task::Forget(split));
        self.tasks.push(Task::Reverse {
            start: split,
            len: start + len - split,
            free: free - 1,
        });
    }
}

/// Where revolve stores the next snapshot when reversing `len ≥ 2` steps with `free ≥ 2`
/// snapshots: `m` steps after the stored one, for any `m` with
/// `β(s, r−2) ≤ m ≤ β(s, r−1)` and `β(s−1, r−1) ≤ len − m ≤ β(s−1, r)`, since then
/// `m + t(len − m, s − 1) + t(m, s) = t(len, s)` by Pascal's rule. This takes the least.
fn split_point(len: usize, free: usize) -> usize {
    let (len, s) = (len as u128, free as u128);
    let r = repetitions(len, s);
    let low = beta(s, r as i128 - 2).max(len.saturating_sub(beta(s - 1, r as i128)));
    low.clamp(1, len - 1) as usize
}

/// The least `r` with `β(s, r) ≥ len`.
fn repetitions(len: u128, s: u128) -> u128 {
    let mut r = 0;
    while beta(s, r as i128) < len {
        r += 1;
    }
    r
}

/// `β(s, r) = C(s + r, s)`, and 0 for `r < 0` (saturating far beyond any step count).
fn beta(s: u128, r: i128) -> u128 {
    if r < 0 {
        return 0;
    }
    let (mut b, r) = (1u128, r as u128);
    for i in 1..=r.min(s) {
        b = b.saturating_mul(s + r - r.min(s) + i) / i;
    }
    b
}

/// Revolve's minimum number of untaped forward steps to reverse `steps` steps with
/// `snapshots` stored states: `r·T − β(s + 1, r − 1)` (see the [module docs](self)).
///
/// ```
/// use retrograd_tape::revolve::optimal_advances;
/// assert_eq!(optimal_advances(10, 1), 45); // from x_0 every time: 9 + 8 + … + 1
/// assert_eq!(optimal_advances(10, 10), 9); // every state stored once
/// assert_eq!(optimal_advances(10_000, 10), 57_624);
/// ```
///
/// # Panics
/// When `snapshots` is 0.
pub fn optimal_advances(steps: usize, snapshots: usize) -> u64 {
    assert!(snapshots >= 1, "revolve: at least one snapshot, got 0");
    let (t, s) = (steps as u128, snapshots as u128);
    if t == 0 {
        return 0;
    }
    let r = repetitions(t, s);
    (r * t - beta(s + 1, r as i128 - 1)) as u64
}

#[cfg(test)]
mod tests;
