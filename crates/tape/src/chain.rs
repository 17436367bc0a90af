//! The Jacobian of a layered chain, multiplied in the order that costs the fewest
//! multiply-adds.
//!
//! For a chain `f = L^l ∘ ··· ∘ L^1` the Jacobian is the product `J_l ··· J_1` of the
//! per-layer Jacobians, `J_k` of shape `[n_k, n_{k-1}]`. Matrix multiplication is
//! associative, so every bracketing of the product gives the same matrix, but not at the
//! same price: an `[m, k]` by `[k, n]` product costs `m·k·n` multiply-adds.
//!
//! - The **forward order** (forward mode) accumulates from the input side,
//!   `J_l (··· (J_3 (J_2 J_1)))`: every intermediate has `n_0` columns.
//! - The **reverse order** (reverse mode) accumulates from the output side,
//!   `((((J_l J_{l-1}) J_{l-2}) ···) J_1)`: every intermediate has `n_l` rows.
//! - The **optimal order** is the cheapest bracketing, found by the classic matrix-chain
//!   dynamic programme in `O(l³)` time. For a chain of mixed widths (an hourglass, an
//!   autoencoder's bottleneck) it beats both pure orders by large factors.
//!
//! ```
//! use retrograd_tape::chain::{chain_costs, chain_jacobian};
//! use ndarray::Array2;
//!
//! // The bottleneck of the issue: widths 500 → 500 → 5 → 500 → 500.
//! let c = chain_costs(&[500, 500, 5, 500, 500]);
//! assert_eq!(c.optimal, 3_750_000);
//! assert_eq!(c.forward, 127_500_000);
//! assert_eq!(c.bracketing.to_string(), "((J4 J3) (J2 J1))");
//!
//! // The product itself, multiplied in that order.
//! let js = [Array2::<f64>::ones((2, 3)), Array2::ones((1, 2))];
//! let p = chain_jacobian(&js);
//! assert_eq!(p.jacobian, Array2::from_elem((1, 3), 2.0));
//! ```

use std::fmt;

use ndarray::Array2;

use crate::Float;

/// An order in which to multiply a chain `J_l ··· J_1`: a binary tree whose leaves are the
/// factors. It prints in the issue's notation, output side on the left: the reverse order
/// of three factors is `((J3 J2) J1)`, the forward order `(J3 (J2 J1))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bracketing {
    /// The factor `J_k` (1-based, as in the notation `J_1 … J_l`).
    Factor(usize),
    /// `(left · right)`: `left` is the output-side (higher-numbered) part.
    Product(Box<Bracketing>, Box<Bracketing>),
}

impl Bracketing {
    /// The forward order for `l` factors, `J_l (··· (J_2 J_1))`: accumulate from the input
    /// side, as forward mode does.
    ///
    /// # Panics
    /// When `l == 0`.
    pub fn forward(l: usize) -> Self {
        assert!(
            l > 0,
            "Bracketing::forward: a chain needs at least one factor"
        );
        let mut b = Bracketing::Factor(1);
        for k in 2..=l {
            b = Bracketing::Product(Box::new(Bracketing::Factor(k)), Box::new(b));
        }
        b
    }

    /// The reverse order for `l` factors, `((J_l J_{l-1}) ···) J_1`: accumulate from the
    /// output side, as reverse mode does.
    ///
    /// # Panics
    /// When `l == 0`.
    pub fn reverse(l: usize) -> Self {
        assert!(
            l > 0,
            "Bracketing::reverse: a chain needs at least one factor"
        );
        let mut b = Bracketing::Factor(l);
        for k in (1..l).rev() {
            b = Bracketing::Product(Box::new(b), Box::new(Bracketing::Factor(k)));
        }
        b
    }

    /// The factors this subtree covers, as the 1-based range `lo..=hi`.
    fn span(&self) -> (usize, usize) {
        match self {
            Bracketing::Factor(k) => (*k, *k),
            Bracketing::Product(a, b) => (b.span().0, a.span().1),
        }
    }

    /// Whether this is a valid bracketing of exactly the factors `J_1 … J_l`.
    fn is_chain_of(&self, l: usize) -> bool {
        fn check(b: &Bracketing) -> Option<(usize, usize)> {
            match b {
                Bracketing::Factor(k) => Some((*k, *k)),
                Bracketing::Product(a, c) => {
                    let (alo, ahi) = check(a)?;
                    let (clo, chi) = check(c)?;
                    (clo <= chi && chi + 1 == alo && alo <= ahi).then_some((clo, ahi))
                }
            }
        }
        check(self) == Some((1, l))
    }

    /// The multiply-adds this order costs for a chain of the given widths
    /// `[n_0, n_1, …, n_l]`: the sum of `m·k·n` over its products.
    ///
    /// # Panics
    /// When the bracketing does not cover exactly `J_1 … J_l` for `l = widths.len() - 1`.
    #[track_caller]
    pub fn cost(&self, widths: &[usize]) -> u64 {
        let l = widths.len().saturating_sub(1);
        assert!(
            self.is_chain_of(l),
            "Bracketing::cost: {self} is not a bracketing of a chain of {l} factors (widths {widths:?})"
        );
        fn go(b: &Bracketing, w: &[usize]) -> u64 {
            match b {
                Bracketing::Factor(_) => 0,
                Bracketing::Product(a, c) => {
                    let (lo, _) = c.span();
                    let (mid, hi) = (a.span().0, a.span().1);
                    // `a` is [n_hi, n_{mid-1}], `c` is [n_{mid-1}, n_{lo-1}].
                    go(a, w) + go(c, w) + madds(w[hi], w[mid - 1], w[lo - 1])
                }
            }
        }
        go(self, widths)
    }
}

impl fmt::Display for Bracketing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bracketing::Factor(k) => write!(f, "J{k}"),
            Bracketing::Product(a, b) => write!(f, "({a} {b})"),
        }
    }
}

/// `m·k·n`, saturating (a cost too large for `u64` is as good as infinite).
fn madds(m: usize, k: usize, n: usize) -> u64 {
    (m as u64).saturating_mul(k as u64).saturating_mul(n as u64)
}

/// The multiply-add counts of the three orders for a chain of the given widths, and the
/// optimal bracketing. Made by [`chain_costs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCosts {
    /// The forward order (from the input side), in multiply-adds.
    pub forward: u64,
    /// The reverse order (from the output side), in multiply-adds.
    pub reverse: u64,
    /// The cheapest bracketing's cost; never more than `forward` or `reverse`.
    pub optimal: u64,
    /// The cheapest bracketing. Ties are broken at each level towards the reverse-order
    /// split, then the forward-order split, so a chain on which a pure order is as cheap
    /// as any reports that order by its familiar name.
    pub bracketing: Bracketing,
}

impl ChainCosts {
    /// Which named order the optimal bracketing is: `"reverse"`, `"forward"`, or
    /// `"optimal"` when it is neither (a mixed order).
    pub fn choice(&self) -> &'static str {
        let l = self.bracketing.span().1;
        if self.bracketing == Bracketing::reverse(l) {
            "reverse"
        } else if self.bracketing == Bracketing::forward(l) {
            "forward"
        } else {
            "optimal"
        }
    }
}

/// The costs of the forward, reverse and optimal orders for a chain of widths
/// `[n_0, n_1, …, n_l]` (so `J_k` is `[n_k, n_{k-1}]`), without multiplying anything: the
/// matrix-chain dynamic programme, `O(l³)` time and `O(l²)` memory.
///
/// ```
/// use retrograd_tape::chain::chain_costs;
/// // Wide in, one output: reverse mode is optimal.
/// let c = chain_costs(&[1000, 100, 100, 100, 1]);
/// assert_eq!((c.optimal, c.choice()), (c.reverse, "reverse"));
/// assert!(c.forward > 100 * c.reverse);
/// ```
///
/// # Panics
/// When `widths` has fewer than two entries (a chain needs at least one factor).
#[track_caller]
pub fn chain_costs(widths: &[usize]) -> ChainCosts {
    assert!(
        widths.len() >= 2,
        "chain_costs: widths {widths:?} describe no factor; a chain of l factors has l + 1 widths"
    );
    let l = widths.len() - 1;
    let w = widths;
    // cost[i][j], split[i][j] for the product of factors i..=j (0-based: factor i is
    // J_{i+1}, of shape [w[i+1], w[i]]); the product is [w[j+1], w[i]].
    let mut cost = vec![vec![0u64; l]; l];
    let mut split = vec![vec![0usize; l]; l];
    for len in 2..=l {
        for i in 0..=l - len {
            let j = i + len - 1;
            // Try the reverse-order split (k = i: the lone input-side factor last) first,
            // then the forward-order split (k = j - 1), then the rest; keep the first best.
            let order = std::iter::once(i)
                .chain((i + 1 < j).then_some(j - 1))
                .chain(i + 1..j.saturating_sub(1));
            let mut best = (u64::MAX, i);
            for k in order {
                // Input side: factors i..=k, [w[k+1], w[i]]; output side k+1..=j,
                // [w[j+1], w[k+1]].
                let c = cost[i][k]
                    .saturating_add(cost[k + 1][j])
                    .saturating_add(madds(w[j + 1], w[k + 1], w[i]));
                if c < best.0 {
                    best = (c, k);
                }
            }
            cost[i][j] = best.0;
            split[i][j] = best.1;
        }
    }
    fn build(split: &[Vec<usize>], i: usize, j: usize) -> Bracketing {
        if i == j {
            Bracketing::Factor(i + 1)
        } else {
            let k = split[i][j];
            Bracketing::Product(
                Box::new(build(split, k + 1, j)),
                Box::new(build(split, i, k)),
            )
        }
    }
    let forward = Bracketing::forward(l).cost(w);
    let reverse = Bracketing::reverse(l).cost(w);
    ChainCosts {
        forward,
        reverse,
        optimal: cost[0][l - 1],
        bracketing: build(&split, 0, l - 1),
    }
}

/// A chain's Jacobian multiplied in the optimal order, with the costs of all three orders.
/// Made by [`chain_jacobian`].
#[derive(Clone, Debug)]
pub struct ChainProduct<T> {
    /// The product `J_l ··· J_1`, of shape `[n_l, n_0]`.
    pub jacobian: Array2<T>,
    /// The forward order's cost in multiply-adds.
    pub cost_forward: u64,
    /// The reverse order's cost in multiply-adds.
    pub cost_reverse: u64,
    /// The chosen (optimal) order's cost in multiply-adds.
    pub cost_optimal: u64,
    /// The order the product was multiplied in, e.g. `((J4 J3) (J2 J1))`.
    pub order: Bracketing,
}

impl<T> ChainProduct<T> {
    /// Which named order was used: `"reverse"`, `"forward"` or `"optimal"` (mixed).
    pub fn choice(&self) -> &'static str {
        ChainCosts {
            forward: self.cost_forward,
            reverse: self.cost_reverse,
            optimal: self.cost_optimal,
            bracketing: self.order.clone(),
        }
        .choice()
    }
}

/// The widths `[n_0, …, n_l]` of a chain of Jacobians, checking that they fit.
#[track_caller]
fn widths_of<T>(jacobians: &[Array2<T>], op: &str) -> Vec<usize> {
    assert!(
        !jacobians.is_empty(),
        "{op}: an empty chain has no Jacobian (its width is unknown)"
    );
    let mut widths = vec![jacobians[0].ncols()];
    for (k, j) in jacobians.iter().enumerate() {
        let prev = widths[k];
        assert!(
            j.ncols() == prev,
            "{op}: J{} has shape {:?} but J{} has {} rows; J_k must be [n_k, n_(k-1)]",
            k + 1,
            j.shape(),
            k,
            prev
        );
        widths.push(j.nrows());
    }
    widths
}

/// The Jacobian `J_l ··· J_1` of a layered chain from its per-layer Jacobians
/// `[J_1, …, J_l]` (`J_k` of shape `[n_k, n_{k-1}]`, the first layer first), multiplied in
/// the order the matrix-chain dynamic programme finds cheapest, with the cost of the
/// forward, reverse and chosen orders.
///
/// # Panics
/// When the list is empty or two neighbours do not fit (`J_k`'s columns are not
/// `J_{k-1}`'s rows); the message names both shapes and the caller's line.
#[track_caller]
pub fn chain_jacobian<T: Float>(jacobians: &[Array2<T>]) -> ChainProduct<T> {
    let widths = widths_of(jacobians, "chain_jacobian");
    let costs = chain_costs(&widths);
    let jacobian = multiply(jacobians, &costs.bracketing);
    ChainProduct {
        jacobian,
        cost_forward: costs.forward,
        cost_reverse: costs.reverse,
        cost_optimal: costs.optimal,
        order: costs.bracketing,
    }
}

/// Multiplies `[J_1, …, J_l]` in the given order, e.g. [`Bracketing::forward`] or
/// [`Bracketing::reverse`] to time the pure modes against the optimal order.
///
/// ```
/// use retrograd_tape::chain::{Bracketing, multiply_in};
/// use ndarray::array;
/// let js = [array![[1.0, 2.0]], array![[3.0], [4.0]]]; // J1: [1, 2], J2: [2, 1]
/// let fwd = multiply_in(&js, &Bracketing::forward(2));
/// assert_eq!(fwd, array![[3.0, 6.0], [4.0, 8.0]]);
/// assert_eq!(fwd, multiply_in(&js, &Bracketing::reverse(2)));
/// ```
///
/// # Panics
/// As [`chain_jacobian`], and when `order` is not a bracketing of exactly these factors.
#[track_caller]
pub fn multiply_in<T: Float>(jacobians: &[Array2<T>], order: &Bracketing) -> Array2<T> {
    let widths = widths_of(jacobians, "multiply_in");
    assert!(
        order.is_chain_of(widths.len() - 1),
        "multiply_in: {order} is not a bracketing of the {} given factors",
        widths.len() - 1
    );
    multiply(jacobians, order)
}

fn multiply<T: Float>(jacobians: &[Array2<T>], order: &Bracketing) -> Array2<T> {
    match order {
        Bracketing::Factor(k) => jacobians[k - 1].clone(),
        Bracketing::Product(a, b) => {
            // Multiply single factors in place rather than cloning them first.
            match (&**a, &**b) {
                (Bracketing::Factor(i), Bracketing::Factor(j)) => {
                    product(&jacobians[i - 1], &jacobians[j - 1])
                }
                (Bracketing::Factor(i), b) => product(&jacobians[i - 1], &multiply(jacobians, b)),
                (a, Bracketing::Factor(j)) => product(&multiply(jacobians, a), &jacobians[j - 1]),
                (a, b) => product(&multiply(jacobians, a), &multiply(jacobians, b)),
            }
        }
    }
}

/// `a · b` through the engine's kernel seam (every core for large products).
pub(crate) fn product<T: Float>(a: &Array2<T>, b: &Array2<T>) -> Array2<T> {
    crate::kernel::gemm_new(T::one(), a.view(), b.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn named_orders_print_in_the_issue_notation() {
        assert_eq!(Bracketing::reverse(3).to_string(), "((J3 J2) J1)");
        assert_eq!(Bracketing::forward(3).to_string(), "(J3 (J2 J1))");
        assert_eq!(Bracketing::forward(1).to_string(), "J1");
    }

    #[test]
    fn the_issue_chains_have_the_expected_costs() {
        let b = chain_costs(&[500, 500, 5, 500, 500]);
        assert_eq!(b.choice(), "optimal");
        // About 34x fewer than either pure order.
        assert_eq!(b.forward / b.optimal, 34);
        assert_eq!(b.reverse / b.optimal, 34);
        let wo = chain_costs(&[1, 100, 100, 100, 1000]);
        assert_eq!((wo.choice(), wo.optimal), ("forward", wo.forward));
        let h = chain_costs(&[300, 10, 300, 10, 300]);
        assert!(h.optimal * 2 <= h.forward.min(h.reverse));
    }

    #[test]
    fn one_factor_costs_nothing() {
        let c = chain_costs(&[3, 4]);
        assert_eq!((c.forward, c.reverse, c.optimal), (0, 0, 0));
        let p = chain_jacobian(&[array![[1.0, 2.0, 3.0]]]);
        assert_eq!(p.jacobian, array![[1.0, 2.0, 3.0]]);
    }

    #[test]
    fn mismatched_factors_name_both_shapes() {
        let r = std::panic::catch_unwind(|| {
            chain_jacobian(&[Array2::<f64>::zeros((2, 3)), Array2::zeros((4, 5))])
        });
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("J2") && msg.contains("[4, 5]") && msg.contains("2 rows"),
            "{msg}"
        );
    }
}
