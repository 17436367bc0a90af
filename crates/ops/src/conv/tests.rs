//! Tests of the convolution and pooling primitives against direct loops, through the
//! gradient-checking kit (first and second order), in f32 against f64, and their errors.

use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use retrograd_tape::strategies::{array, config};
use retrograd_tape::{Tape, Var};

use super::{ConvOps, ConvSpec, Padding, PoolSpec};
use crate::reduce::ReduceOps;
use crate::testing::{assert_panics_with, check, check_many, check_squared};

/// A convolution's sizes: `(n, c/g, o/g, groups, [h, w], [kh, kw], stride, dilation, pads)`.
#[derive(Debug, Clone)]
struct Case {
    n: usize,
    c: usize,
    o: usize,
    groups: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    spec: ConvSpec,
}

impl Case {
    fn x_shape(&self) -> Vec<usize> {
        vec![self.n, self.c * self.groups, self.input[0], self.input[1]]
    }
    fn w_shape(&self) -> Vec<usize> {
        vec![self.o * self.groups, self.c, self.kernel[0], self.kernel[1]]
    }
    /// `(before, after)` padding per axis, resolving 'same'.
    fn pads(&self) -> [(usize, usize); 2] {
        match self.spec.padding {
            Padding::Explicit(p) => p,
            Padding::Same => std::array::from_fn(|a| {
                let total = self.spec.dilation[a] * (self.kernel[a] - 1);
                (total / 2, total - total / 2)
            }),
        }
    }
    /// Whether the dilated kernel fits the padded input.
    fn fits(&self) -> bool {
        let p = self.pads();
        (0..2)
            .all(|a| self.input[a] + p[a].0 + p[a].1 > self.spec.dilation[a] * (self.kernel[a] - 1))
    }
}

/// Small random convolutions (every setting exercised, kernel fitting the padded input).
fn cases() -> impl Strategy<Value = Case> {
    let dims = (1..=2usize, 1..=2usize, 1..=2usize, 1..=2usize);
    let spatial = ([1..=5usize, 1..=5usize], [1..=3usize, 1..=3usize]);
    let settings = (
        [1..=2usize, 1..=2],
        [1..=2usize, 1..=2],
        [(0..=2usize, 0..=1usize), (0..=2usize, 0..=1usize)],
    );
    (dims, spatial, settings, 0..4u8)
        .prop_map(
            |((n, c, o, groups), (input, kernel), (stride, dilation, pads), mode)| {
                let same = mode == 0;
                let spec = ConvSpec {
                    stride: if same { [1, 1] } else { stride },
                    padding: if same {
                        Padding::Same
                    } else {
                        Padding::Explicit(pads)
                    },
                    dilation,
                    groups,
                    output_padding: [0, 0],
                };
                Case {
                    n,
                    c,
                    o,
                    groups,
                    input,
                    kernel,
                    spec,
                }
            },
        )
        .prop_filter("the kernel must fit", Case::fits)
}

/// The convolution by its definition, with explicit loops.
fn reference(case: &Case, x: &ArrayD<f64>, w: &ArrayD<f64>) -> ArrayD<f64> {
    let (pads, s, d) = (case.pads(), case.spec.stride, case.spec.dilation);
    let out: Vec<usize> = (0..2)
        .map(|a| {
            let padded = case.input[a] + pads[a].0 + pads[a].1;
            (padded - d[a] * (case.kernel[a] - 1) - 1) / s[a] + 1
        })
        .collect();
    let o_all = case.o * case.groups;
    let mut y = ArrayD::zeros(IxDyn(&[case.n, o_all, out[0], out[1]]));
    for ((n, o, i, j), v) in y
        .view_mut()
        .into_dimensionality::<ndarray::Ix4>()
        .unwrap()
        .indexed_iter_mut()
    {
        let g = o / case.o;
        for ci in 0..case.c {
            for a in 0..case.kernel[0] {
                for b in 0..case.kernel[1] {
                    let r = (i * s[0] + a * d[0]) as isize - pads[0].0 as isize;
                    let q = (j * s[1] + b * d[1]) as isize - pads[1].0 as isize;
                    let inside = (0..case.input[0] as isize).contains(&r)
                        && (0..case.input[1] as isize).contains(&q);
                    if inside {
                        let xv = x[[n, g * case.c + ci, r as usize, q as usize]];
                        *v += w[[o, ci, a, b]] * xv;
                    }
                }
            }
        }
    }
    y
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b)
            .all(|(p, q)| (p - q).abs() <= tol * (1.0 + q.abs()))
}

fn case_with_data() -> impl Strategy<Value = (Case, ArrayD<f64>, ArrayD<f64>)> {
    cases().prop_flat_map(|case| {
        let (xs, ws) = (case.x_shape(), case.w_shape());
        (Just(case), array(xs, -2.0, 2.0), array(ws, -1.0, 1.0))
    })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn conv2d_matches_its_definition_and_its_derivatives_check((case, x, w) in case_with_data()) {
        let tape = Tape::<f64>::new();
        let y = tape.var(x.clone()).conv2d(&tape.var(w.clone()), case.spec);
        let want = reference(&case, &x, &w);
        prop_assert!(close(&y.array(), &want, 1e-12), "{} vs {}", y.array(), want);
        let spec = case.spec;
        check_many(&[x.clone(), w.clone()], |v| v[0].conv2d(&v[1], spec))?;
        // Squared: the Hessian then exercises every rule's VJP as a function of its
        // cotangent (conv_transpose's and conv_weight's included).
        check_many(&[x, w], |v| {
            let y = v[0].conv2d(&v[1], spec);
            y * y
        })?;
    }

    /// ⟨conv_transpose(y, w), u⟩ = ⟨y, conv(u, w)⟩ for the public op, with output padding.
    #[test]
    fn conv_transpose2d_is_the_adjoint_and_its_derivatives_check(
        (case, u, w) in case_with_data(), extra in [0..2usize, 0..2usize],
    ) {
        prop_assume!(matches!(case.spec.padding, Padding::Explicit(_)));
        let s = case.spec.stride;
        let op = [extra[0].min(s[0] - 1), extra[1].min(s[1] - 1)];
        let spec = case.spec;
        let tape = Tape::<f64>::new();
        let y_shape = tape.var(u.clone()).conv2d(&tape.var(w.clone()), spec).shape();
        // A u of the size conv_transpose produces with this output padding.
        let mut u_shape = case.x_shape();
        let pads = case.pads();
        for a in 0..2 {
            let full = (y_shape[2 + a] - 1) * s[a] + spec.dilation[a] * (case.kernel[a] - 1) + op[a] + 1;
            prop_assume!(full > pads[a].0 + pads[a].1);
            u_shape[2 + a] = full - pads[a].0 - pads[a].1;
        }
        let u = ArrayD::from_shape_fn(IxDyn(&u_shape), |i| ((i[1] + 3 * i[2] + 7 * i[3]) as f64 * 0.37).sin());
        let y = ArrayD::from_shape_fn(IxDyn(&y_shape), |i| ((i[0] + 2 * i[1] + 5 * i[2] + i[3]) as f64 * 0.61).cos());
        let spec_t = spec.output_padding(op);
        let xt = tape.var(y.clone()).conv_transpose2d(&tape.var(w.clone()), spec_t);
        prop_assert_eq!(xt.shape().to_vec(), u_shape.clone());
        let lhs = (&xt.array() * &u).sum();
        let rhs = (&tape.var(u.clone()).conv2d(&tape.var(w.clone()), spec).array() * &y).sum();
        prop_assert!((lhs - rhs).abs() < 1e-9 * (1.0 + rhs.abs()), "{lhs} vs {rhs}");
        check_many(&[y, w], |v| {
            let x = v[0].conv_transpose2d(&v[1], spec_t);
            x * x
        })?;
    }

    #[test]
    fn conv1d_is_conv2d_on_a_row((case, x, w) in case_with_data()) {
        let s = case.spec;
        let uniform = s.stride[0] == s.stride[1] && s.dilation[0] == s.dilation[1]
            && match s.padding { Padding::Same => true, Padding::Explicit(p) => p[0] == p[1] };
        prop_assume!(uniform);
        // The rows of the 2-D case as 1-D sequences, with a kernel of height 1.
        let x1 = x.index_axis(ndarray::Axis(2), 0).to_owned();
        let w1 = w.index_axis(ndarray::Axis(2), 0).to_owned();
        let spec2 = ConvSpec { padding: match s.padding {
            Padding::Same => Padding::Same,
            Padding::Explicit(p) => Padding::Explicit([(0, 0), p[1]]),
        }, stride: [1, s.stride[1]], dilation: [1, s.dilation[1]], ..s };
        let tape = Tape::<f64>::new();
        let y1 = tape.var(x1.clone()).conv1d(&tape.var(w1.clone()), s);
        let y2 = tape.var(x1.clone().insert_axis(ndarray::Axis(2)))
            .conv2d(&tape.var(w1.clone().insert_axis(ndarray::Axis(2))), spec2);
        prop_assert_eq!(y1.array(), y2.array().index_axis(ndarray::Axis(2), 0).to_owned());
        check_many(&[x1, w1], |v| {
            let y = v[0].conv1d(&v[1], s);
            y * y
        })?;
    }
}

/// The f32 computation agrees with the f64 one to f32 precision, values and gradients.
#[test]
fn f32_matches_f64() {
    let xs = ArrayD::from_shape_fn(IxDyn(&[2, 4, 7, 6]), |i| {
        ((i[0] + 3 * i[1] + 5 * i[2] + 7 * i[3]) as f64 * 0.3).sin()
    });
    let ws = ArrayD::from_shape_fn(IxDyn(&[6, 2, 3, 3]), |i| {
        ((i[0] * 2 + i[1] + 3 * i[2] + i[3]) as f64 * 0.7).cos() * 0.5
    });
    let spec = ConvSpec::new().stride(2).padding(1).groups(2);
    fn run<T: retrograd_tape::Float>(
        x: &ArrayD<f64>,
        w: &ArrayD<f64>,
        spec: ConvSpec,
    ) -> Vec<Vec<f64>> {
        let tape = Tape::<T>::new();
        let cast = |a: &ArrayD<f64>| a.mapv(|v| T::of(v));
        let (x, w) = (tape.var(cast(x)), tape.var(cast(w)));
        let y = x.conv2d(&w, spec).max_pool2d(PoolSpec::new(2).stride(1));
        let y = y.avg_pool2d(PoolSpec::new(2)).adaptive_avg_pool2d(1);
        let loss = (y * y).sum_all();
        let g = tape.grad(loss, &[x, w]).unwrap();
        let f = |a: &ArrayD<T>| a.iter().map(|v| v.to_f64().unwrap()).collect::<Vec<_>>();
        vec![f(&y.array()), f(&g[0]), f(&g[1])]
    }
    let (a, b) = (run::<f32>(&xs, &ws, spec), run::<f64>(&xs, &ws, spec));
    for (p, q) in a.iter().zip(&b) {
        for (u, v) in p.iter().zip(q) {
            assert!(
                (u - v).abs() <= 1e-4 * (1.0 + v.abs()),
                "f32 {u} vs f64 {v}"
            );
        }
    }
}

#[test]
fn exact_values_and_shapes() {
    let tape = Tape::<f64>::new();
    let x = tape.var(ArrayD::from_shape_fn(IxDyn(&[1, 1, 3, 3]), |i| {
        (i[2] * 3 + i[3]) as f64
    }));
    let w = tape.var(ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 1.0));
    // Sums of 2x2 windows of [[0,1,2],[3,4,5],[6,7,8]].
    let y = x.conv2d(&w, ConvSpec::new());
    assert_eq!(
        y.array().into_raw_vec_and_offset().0,
        vec![8.0, 12.0, 20.0, 24.0]
    );
    // 'same' keeps the size; the odd padding goes after (bottom, right).
    let y = x.conv2d(&w, ConvSpec::new().padding(Padding::Same));
    assert_eq!(
        y.array().into_raw_vec_and_offset().0,
        vec![8.0, 12.0, 7.0, 20.0, 24.0, 13.0, 13.0, 15.0, 8.0]
    );
    // A stride-2 transposed convolution of a 2x2 kernel doubles the size.
    let z = tape.var(ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), 1.0));
    assert_eq!(
        z.conv_transpose2d(&w, ConvSpec::new().stride(2))
            .shape()
            .as_slice(),
        &[1, 1, 4, 4]
    );
    assert_eq!(x.max_pool2d(PoolSpec::new(2)).item(), 4.0);
    assert_eq!(
        x.max_pool2d(PoolSpec::new(2).padding(1))
            .array()
            .into_raw_vec_and_offset()
            .0,
        vec![0.0, 2.0, 6.0, 8.0]
    );
    assert_eq!(
        x.avg_pool2d(PoolSpec::new(2).stride(1))
            .array()
            .into_raw_vec_and_offset()
            .0,
        vec![2.0, 3.0, 5.0, 6.0]
    );
    // Padding counts in the divisor: the corner window holds 0 alone, over 4.
    let y = x.avg_pool2d(PoolSpec::new(2).padding(1)).array();
    assert_eq!(y.into_raw_vec_and_offset().0, vec![0.0, 0.75, 2.25, 6.0]);
    // Adaptive windows of 3 -> 2 overlap: rows 0..2 and 1..3.
    assert_eq!(
        x.adaptive_avg_pool2d(2).array().into_raw_vec_and_offset().0,
        vec![2.0, 3.0, 5.0, 6.0]
    );
    assert_eq!(
        x.global_avg_pool2d().array(),
        ndarray::array![[4.0]].into_dyn()
    );
    // The max-pool gradient goes to each window's maximum.
    let g = tape
        .grad(x.max_pool2d(PoolSpec::new(2).stride(1)).sum_all(), &[x])
        .unwrap();
    assert_eq!(
        g[0].iter().copied().collect::<Vec<_>>(),
        vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    );
}

/// Distinct values at least 0.3 apart, so no finite difference crosses a tie of a max.
fn distinct(shape: &[usize], seed: usize) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..n {
        order.swap(i, (i * 7919 + seed * 104_729) % n);
    }
    ArrayD::from_shape_vec(
        IxDyn(shape),
        order.iter().map(|&k| k as f64 * 0.3 - 1.0).collect(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn pooling_derivatives_check(
        h in 1..=6usize, w in 1..=6usize, k in [1..=3usize, 1..=3usize],
        s in [1..=2usize, 1..=2usize], p in [0..=1usize, 0..=1usize], out in [1..=4usize, 1..=4usize],
        seed in 0..100usize,
    ) {
        let pool = PoolSpec::new(k).stride(s).padding([p[0].min(k[0] / 2), p[1].min(k[1] / 2)]);
        prop_assume!(pool.output([h, w]).is_ok());
        let x = distinct(&[2, 2, h, w], seed);
        check(&x, |x| x.max_pool2d(pool))?;
        check_squared(&x, |x| x.avg_pool2d(pool))?;
        check_squared(&x, |x| x.adaptive_avg_pool2d(out))?;
        check_squared(&x, |x| x.global_avg_pool2d())?;
    }
}

#[test]
fn bad_inputs_panic_naming_op_shapes_and_line() {
    let z = |s: &[usize]| ArrayD::<f64>::zeros(IxDyn(s));
    let conv = |x: Vec<usize>, w: Vec<usize>, spec: ConvSpec, needles: &[&str]| {
        let (xs, ws) = (format!("{x:?}"), format!("{w:?}"));
        let mut all = vec!["conv2d", xs.as_str(), ws.as_str(), file!()];
        all.extend_from_slice(needles);
        assert_panics_with(
            |tape| {
                tape.var(z(&x)).conv2d(&tape.var(z(&w)), spec);
            },
            &all,
        );
    };
    conv(
        vec![1, 3, 4],
        vec![2, 3, 3, 3],
        ConvSpec::new(),
        &["4-D input"],
    );
    conv(
        vec![1, 3, 4, 4],
        vec![2, 3, 5, 5],
        ConvSpec::new(),
        &["larger than the padded input"],
    );
    conv(
        vec![1, 3, 4, 4],
        vec![2, 1, 3, 3],
        ConvSpec::new().groups(2),
        &["divisible by groups"],
    );
    conv(
        vec![1, 4, 4, 4],
        vec![2, 3, 3, 3],
        ConvSpec::new(),
        &["input channels per group"],
    );
    conv(
        vec![1, 1, 4, 4],
        vec![1, 1, 3, 3],
        ConvSpec::new().stride(2).padding(Padding::Same),
        &["stride of 1"],
    );
    assert_panics_with(
        |tape| {
            tape.var(z(&[1, 1, 3])).max_pool2d(PoolSpec::new(2));
        },
        &["max_pool2d", "[1, 1, 3]", "4-D", file!()],
    );
    assert_panics_with(
        |tape| {
            tape.var(z(&[1, 1, 3, 3])).avg_pool2d(PoolSpec::new(4));
        },
        &["avg_pool2d", "larger than the padded", file!()],
    );

    let tape = Tape::<f64>::new();
    let x: Var<'_, f64> = tape.var(z(&[1, 3, 4, 4]));
    let e = x
        .try_conv2d(&tape.var(z(&[2, 3, 5, 5])), ConvSpec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d") && e.contains("[2, 3, 5, 5]"), "{e}");
    assert!(
        x.try_conv1d(&tape.var(z(&[2, 3, 3])), ConvSpec::new())
            .is_err()
    );
    assert!(
        x.try_conv_transpose2d(&tape.var(z(&[2, 3, 3, 3])), ConvSpec::new())
            .is_err()
    );
    assert!(x.try_max_pool2d(PoolSpec::new(5)).is_err());
    assert!(x.try_avg_pool2d(PoolSpec::new(2).padding(2)).is_err());
    assert!(x.try_adaptive_avg_pool2d(0).is_err());
}

/// `x[i][j] = 7·(5i + j) mod 25` on one 5x5 plane: a permutation of 0..25, so maxima are
/// unique and not always in a window's corner.
fn grid(side: usize) -> ArrayD<f64> {
    ArrayD::from_shape_fn(IxDyn(&[1, 1, side, side]), |i| {
        ((7 * (5 * i[2] + i[3])) % 25) as f64
    })
}

fn values(y: &Var<'_, f64>) -> Vec<f64> {
    y.array().iter().copied().collect()
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    let near = got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12);
    assert!(near, "{got:?} vs {want:?}");
}

/// `ceil_mode`, `dilation` and `count_include_pad` against PyTorch's results, worked by
/// hand (`F.max_pool2d`/`F.avg_pool2d` on the same planes).
#[test]
fn pool_options_match_pytorch_values() {
    let tape = Tape::<f64>::new();
    let x = tape.var(grid(5));
    // 2x2 windows, stride 2, ceil mode: rows {0,1}, {2,3}, {4} (and the same columns).
    let y = x.max_pool2d(PoolSpec::new(2).ceil_mode(true));
    assert_eq!(y.shape().as_slice(), &[1, 1, 3, 3]);
    assert_eq!(
        values(&y),
        [17.0, 24.0, 13.0, 20.0, 19.0, 23.0, 22.0, 11.0, 18.0]
    );
    let g = tape.grad(y.sum_all(), &[x]).unwrap();
    let mut want = vec![0.0; 25];
    for at in [6, 7, 9, 10, 17, 14, 21, 23, 24] {
        want[at] = 1.0;
    }
    assert_eq!(g[0].iter().copied().collect::<Vec<_>>(), want);
    // Floor mode drops the partial windows.
    assert_eq!(
        values(&x.max_pool2d(PoolSpec::new(2))),
        [17.0, 24.0, 20.0, 19.0]
    );
    // Dilation 2: the taps of window (i, j) are rows {i, i+2} and columns {j, j+2}.
    let y = x.max_pool2d(PoolSpec::new(2).stride(1).dilation(2));
    assert_eq!(
        values(&y),
        [20.0, 21.0, 23.0, 24.0, 17.0, 24.0, 20.0, 22.0, 23.0]
    );
    // Dilation, padding and ceil mode: a third window would start in the right padding
    // (at 6 = 5 + 1), so it is dropped; the first window's tap at -1 is padding.
    let pool = PoolSpec::new(2).stride(3).padding(1).dilation(2);
    let y = x.max_pool2d(pool.ceil_mode(true));
    assert_eq!(values(&y), [17.0, 24.0, 22.0, 23.0]);

    // Averages: the ceil-mode windows at the edge divide by what they cover.
    let y = x.avg_pool2d(PoolSpec::new(2).ceil_mode(true));
    assert_close(
        &values(&y),
        &[8.5, 16.25, 8.0, 9.75, 11.25, 15.5, 18.5, 7.5, 18.0],
    );
    // 3x3 windows, stride 2, padding 1 on the top-left 4x4: rows {-1,0,1}, {1,2,3}, {3,4}.
    let x4 = tape.var(grid(5).slice_move(ndarray::s![.., .., ..4, ..4]).to_owned());
    let pool = PoolSpec::new(3).stride(2).padding(1).ceil_mode(true);
    let with_pad = [
        34.0 / 9.0,
        89.0 / 9.0,
        27.0 / 6.0,
        66.0 / 9.0,
        106.0 / 9.0,
        23.0 / 6.0,
        17.0 / 6.0,
        32.0 / 6.0,
        1.0 / 4.0,
    ];
    assert_close(&values(&x4.avg_pool2d(pool)), &with_pad);
    let real_only = [
        34.0 / 4.0,
        89.0 / 6.0,
        27.0 / 2.0,
        66.0 / 6.0,
        106.0 / 9.0,
        23.0 / 3.0,
        17.0 / 2.0,
        32.0 / 3.0,
        1.0,
    ];
    let y = x4.avg_pool2d(pool.count_include_pad(false));
    assert_close(&values(&y), &real_only);
    let y = x4.avg_pool2d(pool.ceil_mode(false).count_include_pad(false));
    assert_close(&values(&y), &[8.5, 89.0 / 6.0, 11.0, 106.0 / 9.0]);
    // The gradient of a mean without padding: each real entry gets 1/count.
    let y = x4.avg_pool2d(PoolSpec::new(2).padding(1).count_include_pad(false));
    let g = tape.grad(y.sum_all(), &[x4]).unwrap();
    assert_eq!(g[0][[0, 0, 0, 0]], 1.0);
    assert_eq!(g[0][[0, 0, 1, 1]], 0.25);
    assert_eq!(g[0][[0, 0, 0, 1]], 0.5);
}

/// A pooling's output extent as PyTorch computes it (`pooling_output_shape`).
fn pytorch_extent(extent: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
    let room = (extent + 2 * p) as isize - (d * (k - 1)) as isize - 1
        + if ceil { s as isize - 1 } else { 0 };
    let out = room.div_euclid(s as isize) as usize + 1;
    if ceil && (out - 1) * s >= extent + p {
        out - 1
    } else {
        out
    }
}

/// Pooling by its definition, with loops over every tap of every window: the maximum of
/// the taps inside the input, or the sum inside over the window's divisor.
fn pool_reference(x: &ArrayD<f64>, pool: PoolSpec, max: bool) -> ArrayD<f64> {
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let (k, s, p, d, ceil) = (
        pool.kernel,
        pool.stride,
        pool.padding,
        pool.dilation,
        pool.ceil_mode,
    );
    let oh = pytorch_extent(h, k[0], s[0], p[0], d[0], ceil);
    let ow = pytorch_extent(w, k[1], s[1], p[1], d[1], ceil);
    let shape = [x.shape()[0], x.shape()[1], oh, ow];
    ArrayD::from_shape_fn(IxDyn(&shape), |at| {
        let start = |o: usize, a: usize| (o * s[a]) as isize - p[a] as isize;
        let (r0, c0) = (start(at[2], 0), start(at[3], 1));
        let mut taps = Vec::new();
        for a in 0..k[0] as isize {
            for b in 0..k[1] as isize {
                let (r, c) = (r0 + a * d[0] as isize, c0 + b * d[1] as isize);
                if (0..h as isize).contains(&r) && (0..w as isize).contains(&c) {
                    taps.push(x[[at[0], at[1], r as usize, c as usize]]);
                }
            }
        }
        if max {
            return taps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        }
        let clip = |s0: isize, a: usize, extent: usize| {
            ((s0 + k[a] as isize).min((extent + p[a]) as isize) - s0) as f64
        };
        let divisor = match pool.count_include_pad {
            true => clip(r0, 0, h) * clip(c0, 1, w),
            false => taps.len() as f64,
        };
        taps.iter().sum::<f64>() / divisor
    })
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn pooling_options_match_their_definition_and_derivatives_check(
        h in 1..=7usize, w in 1..=7usize, k in [1..=3usize, 1..=3usize],
        s in [1..=3usize, 1..=3usize], p in [0..=1usize, 0..=1usize], d in [1..=2usize, 1..=2usize],
        ceil in any::<bool>(), include in any::<bool>(), seed in 0..100usize,
    ) {
        let padding = [p[0].min(k[0] / 2), p[1].min(k[1] / 2)];
        let pool = PoolSpec::new(k).stride(s).padding(padding).ceil_mode(ceil);
        let max_pool = pool.dilation(d);
        let avg_pool = pool.count_include_pad(include);
        let x = distinct(&[2, 2, h, w], seed);
        let tape = Tape::<f64>::new();
        let xv = tape.var(x.clone());
        if let Ok(y) = xv.try_max_pool2d(max_pool) {
            prop_assert_eq!(y.array(), pool_reference(&x, max_pool, true));
            check(&x, |x| x.max_pool2d(max_pool))?;
        }
        if let Ok(y) = xv.try_avg_pool2d(avg_pool) {
            prop_assert!(close(&y.array(), &pool_reference(&x, avg_pool, false), 1e-12));
            check_squared(&x, |x| x.avg_pool2d(avg_pool))?;
        }
    }
}

#[test]
fn bad_pool_options_panic_naming_op_shapes_and_line() {
    let z = |s: &[usize]| ArrayD::<f64>::zeros(IxDyn(s));
    assert_panics_with(
        |tape| {
            tape.var(z(&[1, 1, 4, 4]))
                .max_pool2d(PoolSpec::new(2).count_include_pad(false));
        },
        &["max_pool2d", "[1, 1, 4, 4]", "count_include_pad", file!()],
    );
    assert_panics_with(
        |tape| {
            tape.var(z(&[1, 1, 4, 4]))
                .avg_pool2d(PoolSpec::new(2).dilation(2));
        },
        &["avg_pool2d", "[1, 1, 4, 4]", "dilation", file!()],
    );
    // Taps at -1 and 2 of a 2-wide input: the window holds only padding.
    assert_panics_with(
        |tape| {
            let pool = PoolSpec::new(2).dilation(3).padding(1).stride(1);
            tape.var(z(&[1, 1, 2, 2])).max_pool2d(pool);
        },
        &["max_pool2d", "[1, 1, 2, 2]", "covers only padding", file!()],
    );
    assert_panics_with(
        |tape| {
            tape.var(z(&[1, 1, 4, 4]))
                .max_pool2d(PoolSpec::new(2).dilation(0));
        },
        &["max_pool2d", "dilation must be at least 1", file!()],
    );
    let tape = Tape::<f64>::new();
    let x = tape.var(z(&[1, 1, 4, 4]));
    // A dilated 3x3 window spans 5 > 4 + 2·0.
    let e = x.try_max_pool2d(PoolSpec::new(3).dilation(2)).unwrap_err();
    assert!(
        e.to_string().contains("larger than the padded input"),
        "{e}"
    );
}

/// A NaN in a window wins (the first one), so it propagates, as in PyTorch.
#[test]
fn max_pool_propagates_the_first_nan() {
    let tape = Tape::<f64>::new();
    let v = [1.0, f64::NAN, 3.0, f64::NAN, 5.0, 0.0, 2.0, 1.0];
    let x = tape.var(ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 4]), v.to_vec()).unwrap());
    let y = x.max_pool2d(PoolSpec::new(2));
    let got = values(&y);
    assert!(got[0].is_nan() && got[1].is_nan(), "{got:?}");
    let g = tape.grad(y.sum_all(), &[x]).unwrap();
    let g: Vec<f64> = g[0].iter().copied().collect();
    assert_eq!(g, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let y = x.max_pool2d(PoolSpec::new([2, 1]).stride([2, 2]));
    assert_eq!(values(&y), [5.0, 3.0]);
}
