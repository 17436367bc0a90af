//! Seeded parameter initialisers: Xavier/Glorot, Kaiming/He, zeros, constants.
//!
//! Every random initialiser takes the random generator explicitly, so a run is
//! reproducible from one seed ([`rng_from_seed`]) and nothing hides global state.
//!
//! # Fan-in and fan-out
//! The scaled schemes read `fan_in` and `fan_out` from the shape with PyTorch's layout
//! convention ([`Fans::from_shape`]): dimension 0 is the number of outputs, dimension 1 the
//! number of inputs, and any further dimensions are a receptive field (a convolution
//! kernel) that multiplies both. A layer that stores its weight the other way round
//! (`[in, out]`) passes its fans explicitly with [`Init::sample_with_fans`].
//!
//! ```
//! use retrograd_nn::init::{self, Init, Nonlinearity};
//!
//! let mut rng = init::rng_from_seed(42);
//! let w = Init::kaiming_uniform(Nonlinearity::Relu).sample::<f32, _>(&[128, 64], &mut rng);
//! let bound = (2.0f32).sqrt() * (3.0f32 / 64.0).sqrt();
//! assert!(w.iter().all(|x| x.abs() <= bound));
//! ```

use std::f64::consts::PI;

use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::scalar::{Scalar, cast};

/// A seeded random generator for initialisers and shuffling.
///
/// `StdRng` gives the same stream for the same seed on every platform for a given version
/// of `rand`; upgrading `rand` may change the stream.
pub fn rng_from_seed(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The number of inputs and outputs that feed one unit: what the scaled initialisers
/// divide by to keep activation (fan-in) or gradient (fan-out) variance constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fans {
    /// Inputs per output unit.
    pub fan_in: usize,
    /// Outputs per input unit.
    pub fan_out: usize,
}

impl Fans {
    /// Fans of a weight in PyTorch's layout `[out, in, k1, k2, ...]`:
    /// `fan_in = in * k1 * k2 * ...`, `fan_out = out * k1 * k2 * ...`.
    ///
    /// # Panics
    /// If the shape has fewer than two dimensions (a bias or a scalar has no fan-in to
    /// scale by: initialise it with [`Init::Zeros`] or [`Init::Constant`], or pass the fans
    /// yourself).
    pub fn from_shape(shape: &[usize]) -> Self {
        assert!(
            shape.len() >= 2,
            "init: fan_in/fan_out need a shape with at least 2 dimensions [out, in, ...], got {shape:?}; \
             pass the fans explicitly with Init::sample_with_fans"
        );
        let receptive: usize = shape[2..].iter().product();
        Fans {
            fan_in: shape[1] * receptive,
            fan_out: shape[0] * receptive,
        }
    }

    fn get(self, mode: FanMode) -> usize {
        match mode {
            FanMode::FanIn => self.fan_in,
            FanMode::FanOut => self.fan_out,
        }
    }
}

/// Which fan Kaiming initialisation preserves: `FanIn` keeps the variance of activations
/// in the forward pass (the usual choice), `FanOut` that of gradients in the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FanMode {
    /// Scale by the number of inputs.
    #[default]
    FanIn,
    /// Scale by the number of outputs.
    FanOut,
}

/// The nonlinearity that follows a layer, which decides the recommended gain
/// (PyTorch's `calculate_gain`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// No nonlinearity (or a convolution/linear map): gain 1.
    Linear,
    /// Logistic sigmoid: gain 1.
    Sigmoid,
    /// Hyperbolic tangent: gain 5/3.
    Tanh,
    /// Rectified linear unit: gain √2 (half the units are zero).
    Relu,
    /// Leaky ReLU with the given negative slope: gain √(2 / (1 + slope²)).
    LeakyRelu(f64),
    /// SELU: gain 3/4.
    Selu,
}

impl Nonlinearity {
    /// The recommended gain for this nonlinearity.
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => 2f64.sqrt(),
            Nonlinearity::LeakyRelu(a) => (2.0 / (1.0 + a * a)).sqrt(),
            Nonlinearity::Selu => 0.75,
        }
    }
}

/// An initialisation scheme: a value a layer can hold in its configuration and sample
/// when it creates its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (the usual bias initialiser).
    Zeros,
    /// Every element equal to the constant.
    Constant(f64),
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound (inclusive).
        low: f64,
        /// Upper bound (exclusive).
        high: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Glorot & Bengio (2010): uniform on `±gain·√(6 / (fan_in + fan_out))`.
    XavierUniform {
        /// Multiplier, see [`Nonlinearity::gain`].
        gain: f64,
    },
    /// Glorot & Bengio (2010): normal with std `gain·√(2 / (fan_in + fan_out))`.
    XavierNormal {
        /// Multiplier, see [`Nonlinearity::gain`].
        gain: f64,
    },
    /// He et al. (2015): uniform on `±gain·√(3 / fan)`.
    KaimingUniform {
        /// Multiplier, see [`Nonlinearity::gain`].
        gain: f64,
        /// Which fan to scale by.
        mode: FanMode,
    },
    /// He et al. (2015): normal with std `gain / √fan`.
    KaimingNormal {
        /// Multiplier, see [`Nonlinearity::gain`].
        gain: f64,
        /// Which fan to scale by.
        mode: FanMode,
    },
}

impl Init {
    /// Xavier uniform with the gain for `nl`.
    pub fn xavier_uniform(nl: Nonlinearity) -> Self {
        Init::XavierUniform { gain: nl.gain() }
    }

    /// Xavier normal with the gain for `nl`.
    pub fn xavier_normal(nl: Nonlinearity) -> Self {
        Init::XavierNormal { gain: nl.gain() }
    }

    /// Kaiming uniform, fan-in mode, with the gain for `nl`.
    pub fn kaiming_uniform(nl: Nonlinearity) -> Self {
        Init::KaimingUniform {
            gain: nl.gain(),
            mode: FanMode::FanIn,
        }
    }

    /// Kaiming normal, fan-in mode, with the gain for `nl`.
    pub fn kaiming_normal(nl: Nonlinearity) -> Self {
        Init::KaimingNormal {
            gain: nl.gain(),
            mode: FanMode::FanIn,
        }
    }

    /// Whether this scheme reads fan-in/fan-out.
    pub fn needs_fans(&self) -> bool {
        matches!(
            self,
            Init::XavierUniform { .. }
                | Init::XavierNormal { .. }
                | Init::KaimingUniform { .. }
                | Init::KaimingNormal { .. }
        )
    }

    /// A new array of `shape` drawn from this scheme, with fans from
    /// [`Fans::from_shape`] when the scheme needs them.
    ///
    /// # Panics
    /// If the scheme needs fans and `shape` has fewer than two dimensions, or a fan is 0.
    pub fn sample<T: Scalar, R: Rng + ?Sized>(&self, shape: &[usize], rng: &mut R) -> ArrayD<T> {
        let fans = if self.needs_fans() {
            Fans::from_shape(shape)
        } else {
            Fans {
                fan_in: 1,
                fan_out: 1,
            }
        };
        self.sample_with_fans(shape, fans, rng)
    }

    /// A new array of `shape` drawn from this scheme with the given fans (for layouts other
    /// than `[out, in, ...]`).
    ///
    /// # Panics
    /// If the scheme needs a fan that is 0, or a `Uniform`/`Normal` has invalid bounds.
    pub fn sample_with_fans<T: Scalar, R: Rng + ?Sized>(
        &self,
        shape: &[usize],
        fans: Fans,
        rng: &mut R,
    ) -> ArrayD<T> {
        let check = |fan: usize| {
            assert!(
                fan > 0,
                "init: {self:?} needs a nonzero fan, got {fans:?} for shape {shape:?}"
            );
            fan as f64
        };
        match *self {
            Init::Zeros => ArrayD::zeros(IxDyn(shape)),
            Init::Constant(c) => ArrayD::from_elem(IxDyn(shape), cast(c)),
            Init::Uniform { low, high } => {
                assert!(
                    low <= high,
                    "init: Uniform needs low <= high, got low = {low}, high = {high}"
                );
                uniform(shape, low, high, rng)
            }
            Init::Normal { mean, std } => {
                assert!(std >= 0.0, "init: Normal needs std >= 0, got {std}");
                normal(shape, mean, std, rng)
            }
            Init::XavierUniform { gain } => {
                let a = gain * (6.0 / (check(fans.fan_in) + check(fans.fan_out))).sqrt();
                uniform(shape, -a, a, rng)
            }
            Init::XavierNormal { gain } => {
                let std = gain * (2.0 / (check(fans.fan_in) + check(fans.fan_out))).sqrt();
                normal(shape, 0.0, std, rng)
            }
            Init::KaimingUniform { gain, mode } => {
                let a = gain * (3.0 / check(fans.get(mode))).sqrt();
                uniform(shape, -a, a, rng)
            }
            Init::KaimingNormal { gain, mode } => {
                let std = gain / check(fans.get(mode)).sqrt();
                normal(shape, 0.0, std, rng)
            }
        }
    }
}

/// An array of zeros.
pub fn zeros<T: Scalar>(shape: &[usize]) -> ArrayD<T> {
    ArrayD::zeros(IxDyn(shape))
}

/// An array filled with `value`.
pub fn constant<T: Scalar>(shape: &[usize], value: T) -> ArrayD<T> {
    ArrayD::from_elem(IxDyn(shape), value)
}

/// Xavier/Glorot uniform: `U(-a, a)` with `a = gain·√(6 / (fan_in + fan_out))`.
/// Fans from [`Fans::from_shape`] (panics below 2 dimensions).
pub fn xavier_uniform<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    rng: &mut R,
) -> ArrayD<T> {
    Init::XavierUniform { gain }.sample(shape, rng)
}

/// Xavier/Glorot normal: `N(0, std²)` with `std = gain·√(2 / (fan_in + fan_out))`.
/// Fans from [`Fans::from_shape`] (panics below 2 dimensions).
pub fn xavier_normal<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    rng: &mut R,
) -> ArrayD<T> {
    Init::XavierNormal { gain }.sample(shape, rng)
}

/// Kaiming/He uniform: `U(-a, a)` with `a = gain·√(3 / fan)`.
/// Fans from [`Fans::from_shape`] (panics below 2 dimensions).
pub fn kaiming_uniform<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    mode: FanMode,
    rng: &mut R,
) -> ArrayD<T> {
    Init::KaimingUniform { gain, mode }.sample(shape, rng)
}

/// Kaiming/He normal: `N(0, std²)` with `std = gain / √fan`.
/// Fans from [`Fans::from_shape`] (panics below 2 dimensions).
pub fn kaiming_normal<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    gain: f64,
    mode: FanMode,
    rng: &mut R,
) -> ArrayD<T> {
    Init::KaimingNormal { gain, mode }.sample(shape, rng)
}

/// Uniform on `[low, high)`, drawn in f64 and rounded to `T`.
fn uniform<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    low: f64,
    high: f64,
    rng: &mut R,
) -> ArrayD<T> {
    let width = high - low;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let u: f64 = rng.random(); // [0, 1)
        // Rounding to f32 can land exactly on `high`; clamp keeps the documented bound
        // inclusive at worst, never outside.
        cast::<T>(low + width * u).min(cast(high)).max(cast(low))
    })
}

/// Normal samples by the Box-Muller transform: two uniforms give two independent
/// standard normals, `√(-2 ln u1)·(cos 2πu2, sin 2πu2)`.
fn normal<T: Scalar, R: Rng + ?Sized>(
    shape: &[usize],
    mean: f64,
    std: f64,
    rng: &mut R,
) -> ArrayD<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (2.0 * PI * u2).sin_cos();
        out.push(cast(mean + std * r * c));
        if out.len() < n {
            out.push(cast(mean + std * r * s));
        }
    }
    ArrayD::from_shape_vec(IxDyn(shape), out).expect("length equals the shape's product")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mean_std(a: &ArrayD<f64>) -> (f64, f64) {
        let n = a.len() as f64;
        let m = a.sum() / n;
        let v = a.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        (m, v.sqrt())
    }

    #[test]
    fn fans_follow_pytorch_layout() {
        assert_eq!(
            Fans::from_shape(&[8, 4]),
            Fans {
                fan_in: 4,
                fan_out: 8
            }
        );
        assert_eq!(
            Fans::from_shape(&[16, 3, 5, 5]),
            Fans {
                fan_in: 75,
                fan_out: 400
            }
        );
    }

    #[test]
    #[should_panic(expected = "at least 2 dimensions")]
    fn fans_of_a_vector_panic() {
        Fans::from_shape(&[5]);
    }

    #[test]
    fn gains() {
        assert_eq!(Nonlinearity::Linear.gain(), 1.0);
        assert!((Nonlinearity::Relu.gain() - 2f64.sqrt()).abs() < 1e-15);
        assert!((Nonlinearity::LeakyRelu(0.0).gain() - 2f64.sqrt()).abs() < 1e-15);
        assert!((Nonlinearity::Tanh.gain() - 5.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn same_seed_same_values_different_seed_different_values() {
        let a: ArrayD<f32> = xavier_normal(&[10, 10], 1.0, &mut rng_from_seed(1));
        let b: ArrayD<f32> = xavier_normal(&[10, 10], 1.0, &mut rng_from_seed(1));
        let c: ArrayD<f32> = xavier_normal(&[10, 10], 1.0, &mut rng_from_seed(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn moments_match_the_schemes() {
        let mut rng = rng_from_seed(7);
        // 200 x 100: fan_in 100, fan_out 200, 20 000 samples; std error of the std ~0.5%.
        let shape = [200, 100];
        let cases: [(Init, f64); 4] = [
            (Init::XavierUniform { gain: 1.0 }, (2.0f64 / 300.0).sqrt()),
            (Init::XavierNormal { gain: 1.0 }, (2.0f64 / 300.0).sqrt()),
            (
                Init::kaiming_uniform(Nonlinearity::Relu),
                (2.0f64 / 100.0).sqrt(),
            ),
            (
                Init::KaimingNormal {
                    gain: 2f64.sqrt(),
                    mode: FanMode::FanOut,
                },
                (2.0f64 / 200.0).sqrt(),
            ),
        ];
        for (init, want_std) in cases {
            let a: ArrayD<f64> = init.sample(&shape, &mut rng);
            let (m, s) = mean_std(&a);
            assert!(m.abs() < 0.05 * want_std, "{init:?}: mean {m}");
            assert!(
                (s / want_std - 1.0).abs() < 0.03,
                "{init:?}: std {s} vs {want_std}"
            );
        }
    }

    #[test]
    fn zeros_constant_and_odd_lengths() {
        assert!(zeros::<f32>(&[3, 2]).iter().all(|&x| x == 0.0));
        assert!(constant(&[4], 0.5f64).iter().all(|&x| x == 0.5));
        assert_eq!(
            Init::Constant(2.0)
                .sample::<f32, _>(&[], &mut rng_from_seed(0))
                .sum(),
            2.0
        );
        // Box-Muller makes pairs: an odd count must still fill exactly.
        let a: ArrayD<f64> = Init::Normal {
            mean: 3.0,
            std: 0.0,
        }
        .sample(&[3, 1, 1], &mut rng_from_seed(0));
        assert_eq!(a.shape(), &[3, 1, 1]);
        assert!(a.iter().all(|&x| x == 3.0));
    }

    proptest! {
        #![proptest_config(crate::test_util::proptest_config())]

        #[test]
        fn uniform_schemes_stay_in_bounds(out in 1usize..20, inp in 1usize..20, k in 1usize..4, seed: u64, gain in 0.1f64..3.0) {
            let shape = [out, inp, k];
            let fans = Fans::from_shape(&shape);
            let mut rng = rng_from_seed(seed);
            let xa = (gain * (6.0 / (fans.fan_in + fans.fan_out) as f64).sqrt()) as f32;
            let x: ArrayD<f32> = xavier_uniform(&shape, gain, &mut rng);
            prop_assert!(x.iter().all(|v| v.abs() <= xa));
            let ka = gain * (3.0 / fans.fan_in as f64).sqrt();
            let w: ArrayD<f64> = kaiming_uniform(&shape, gain, FanMode::FanIn, &mut rng);
            prop_assert!(w.iter().all(|v| v.abs() <= ka));
            let n: ArrayD<f64> = kaiming_normal(&shape, gain, FanMode::FanOut, &mut rng);
            prop_assert!(n.iter().all(|v| v.is_finite()));
        }
    }
}
