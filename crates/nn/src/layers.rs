//! Layers: [`Linear`], the activations, [`Dropout`], [`LayerNorm`], [`Embedding`], and
//! the [`mlp`] builder.
//!
//! Layers hold configuration only and implement [`Module`] for every element type; their
//! parameters live in a [`ParamStore`](crate::ParamStore) under the names they list. Each
//! layer is built from the engine's fused primitives, so its gradients (and second
//! derivatives) come from those ops' rules.
//!
//! ```
//! use retrograd_nn::{Module, Session, layers::{mlp, Activation}};
//! let model = mlp::<f32>(&[64, 128, 10], Activation::Relu);
//! assert_eq!(model.num_parameters(), 64 * 128 + 128 + 128 * 10 + 10);
//! let store = model.init_store(42);
//! let logits = Session::new(0).eval(&store, |p| model.forward(p.input(ndarray::Array2::<f32>::zeros((5, 64))), p));
//! assert_eq!(logits.shape(), &[5, 10]);
//! ```

use ndarray::ArrayD;
use rand::RngExt;
use retrograd_ops::prelude::*;
use retrograd_tape::{Tensor, Var};

use crate::init::{FanMode, Init};
use crate::module::{Module, ParamSpec, Sequential};
use crate::params::Params;
use crate::scalar::{Scalar, cast};

/// A fully connected layer `y = x · Wᵀ + b`, with PyTorch's layout: `weight` is
/// `[out_features, in_features]`, `bias` is `[out_features]`.
///
/// The input's last axis must be `in_features`; leading axes are batch axes
/// (`[N, in] -> [N, out]`, `[in] -> [out]`). The product is one `matmul` with the weight's
/// transpose as a flag: no copy of `W`.
///
/// Initialisation is PyTorch's default: both `weight` and `bias` uniform on
/// `±1/√in_features` (Kaiming-uniform with gain `√(1/3)`); change it with
/// [`weight_init`](Linear::weight_init) (e.g. `Init::kaiming_uniform(Nonlinearity::Relu)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    /// Input features (the last axis of the input).
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether the layer adds a bias.
    pub bias: bool,
    /// The weight's initialiser.
    pub weight_init: Init,
    /// The bias's initialiser.
    pub bias_init: Init,
}

impl Linear {
    /// A layer from `in_features` to `out_features`, with a bias and PyTorch's default
    /// initialisation.
    ///
    /// # Panics
    /// When `in_features` is 0.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        assert!(in_features > 0, "Linear: in_features must be > 0");
        let bound = 1.0 / (in_features as f64).sqrt();
        Linear {
            in_features,
            out_features,
            bias: true,
            weight_init: Init::KaimingUniform {
                gain: (1.0f64 / 3.0).sqrt(),
                mode: FanMode::FanIn,
            },
            bias_init: Init::Uniform {
                low: -bound,
                high: bound,
            },
        }
    }

    /// Without a bias (`y = x · Wᵀ`).
    pub fn no_bias(mut self) -> Self {
        self.bias = false;
        self
    }

    /// Sets the weight's initialiser.
    pub fn weight_init(mut self, init: Init) -> Self {
        self.weight_init = init;
        self
    }

    /// Sets the bias's initialiser.
    pub fn bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }
}

impl<T: Scalar> Module<T> for Linear {
    fn parameters(&self) -> Vec<ParamSpec> {
        let mut specs = vec![ParamSpec::new(
            "weight",
            &[self.out_features, self.in_features],
            self.weight_init,
        )];
        if self.bias {
            specs.push(ParamSpec::new("bias", &[self.out_features], self.bias_init));
        }
        specs
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope("Linear");
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.in_features),
            "Linear({} -> {}) {:?}: the input's last axis must be {}, got shape {:?} (input created at {})",
            self.in_features,
            self.out_features,
            p.prefix(),
            self.in_features,
            &shape[..],
            x.location()
        );
        let y = x.matmul_transposed(&p.get("weight"), Transpose::Second);
        if self.bias { y + p.get("bias") } else { y }
    }
}

/// The elementwise nonlinearities, as one value a builder can take ([`mlp`]). Each is also
/// a layer on its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^{-x})`.
    Sigmoid,
    /// `x Φ(x)` with the exact normal CDF (PyTorch's default `GELU`).
    Gelu,
    /// `x` for `x > 0`, `slope · x` otherwise.
    LeakyRelu(f64),
    /// `x` unchanged.
    Identity,
}

impl Activation {
    /// Applies the nonlinearity.
    #[track_caller]
    pub fn apply<'t, T: Scalar>(self, x: Var<'t, T>) -> Var<'t, T> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Gelu => x.gelu(),
            Activation::LeakyRelu(slope) => x.leaky_relu(cast(slope)),
            Activation::Identity => x,
        }
    }
}

impl<T: Scalar> Module<T> for Activation {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope(&format!("{self:?}"));
        self.apply(x)
    }
}

macro_rules! activation_layer {
    ($(#[$doc:meta])* $name:ident => $act:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl<T: Scalar> Module<T> for $name {
            fn parameters(&self) -> Vec<ParamSpec> {
                Vec::new()
            }
            #[track_caller]
            fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
                let _scope = p.scope(stringify!($name));
                $act.apply(x)
            }
        }
    };
}

activation_layer!(
    /// The rectifier `max(x, 0)` as a layer (subgradient 0 at 0).
    Relu => Activation::Relu
);
activation_layer!(
    /// `tanh(x)` as a layer.
    Tanh => Activation::Tanh
);
activation_layer!(
    /// The logistic sigmoid as a layer.
    Sigmoid => Activation::Sigmoid
);
activation_layer!(
    /// GELU `x Φ(x)` (exact, with `erf`) as a layer.
    Gelu => Activation::Gelu
);

/// Leaky ReLU as a layer: `x` for `x > 0`, `negative_slope · x` otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyRelu {
    /// The slope for negative inputs (PyTorch's default is 0.01).
    pub negative_slope: f64,
}

impl LeakyRelu {
    /// With the given slope.
    pub fn new(negative_slope: f64) -> Self {
        LeakyRelu { negative_slope }
    }
}

impl Default for LeakyRelu {
    /// PyTorch's default slope, 0.01.
    fn default() -> Self {
        Self::new(0.01)
    }
}

impl<T: Scalar> Module<T> for LeakyRelu {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope("LeakyRelu");
        Activation::LeakyRelu(self.negative_slope).apply(x)
    }
}

/// Inverted dropout: in training mode each element is zeroed with probability `p` and the
/// survivors are scaled by `1/(1 − p)`, so evaluation (where the layer is the identity)
/// needs no rescaling.
///
/// The mask is drawn from the pass's seeded random stream ([`Params::with_rng`]) and
/// enters the tape as a constant: the gradient is the mask times the output's cotangent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// The probability of zeroing an element, in `[0, 1]`.
    pub p: f64,
}

impl Dropout {
    /// Dropout with rate `p`.
    ///
    /// # Panics
    /// When `p` is not in `[0, 1]`.
    pub fn new(p: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&p),
            "Dropout: p must be in [0, 1], got {p}"
        );
        Dropout { p }
    }
}

impl<T: Scalar> Module<T> for Dropout {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope("Dropout");
        if !p.is_training() || self.p == 0.0 {
            return x;
        }
        let keep = 1.0 - self.p;
        let scale: T = if keep > 0.0 {
            cast(1.0 / keep)
        } else {
            T::zero()
        };
        let shape = x.shape();
        let mask = p.with_rng(|rng| {
            ArrayD::from_shape_simple_fn(&shape[..], || {
                if rng.random::<f64>() < keep {
                    scale
                } else {
                    T::zero()
                }
            })
        });
        x * p.input(mask)
    }
}

/// Layer normalisation over the last axis (Ba et al., 2016; PyTorch's `LayerNorm` with one
/// normalised dimension):
/// `y = (x − mean(x)) / √(var(x) + eps) · weight + bias`, with the population variance
/// over the last axis, `weight` initialised to ones and `bias` to zeros.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNorm {
    /// The extent of the last axis.
    pub features: usize,
    /// Added to the variance (PyTorch's default is 1e-5).
    pub eps: f64,
    /// Whether the layer has the learnable `weight` and `bias`.
    pub affine: bool,
}

impl LayerNorm {
    /// Over a last axis of `features`, with `eps = 1e-5` and an affine transform.
    pub fn new(features: usize) -> Self {
        LayerNorm {
            features,
            eps: 1e-5,
            affine: true,
        }
    }

    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Without the learnable weight and bias.
    pub fn no_affine(mut self) -> Self {
        self.affine = false;
        self
    }
}

impl<T: Scalar> Module<T> for LayerNorm {
    fn parameters(&self) -> Vec<ParamSpec> {
        if self.affine {
            vec![
                ParamSpec::new("weight", &[self.features], Init::Constant(1.0)),
                ParamSpec::new("bias", &[self.features], Init::Zeros),
            ]
        } else {
            Vec::new()
        }
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope("LayerNorm");
        let shape = x.shape();
        assert!(
            shape.last() == Some(&self.features),
            "LayerNorm({}) {:?}: the input's last axis must be {}, got shape {:?} (input created at {})",
            self.features,
            p.prefix(),
            self.features,
            &shape[..],
            x.location()
        );
        let centred = x - x.mean(-1, true);
        let std = (x.var(-1, true) + cast::<T>(self.eps)).sqrt();
        let y = centred / std;
        if self.affine {
            y * p.get("weight") + p.get("bias")
        } else {
            y
        }
    }
}

/// A lookup table of `num_embeddings` vectors of `dim` entries (`weight`, shape
/// `[num_embeddings, dim]`, initialised `N(0, 1)` as in PyTorch).
///
/// [`lookup`](Embedding::lookup) takes integer indices. As a [`Module`] the input is a
/// tensor of indices stored as floats (of any shape `S`; the output has shape `S + [dim]`),
/// so that an embedding can head a [`Sequential`]; no gradient flows to the indices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Embedding {
    /// The number of rows of the table.
    pub num_embeddings: usize,
    /// The length of each vector.
    pub dim: usize,
    /// The table's initialiser.
    pub init: Init,
}

impl Embedding {
    /// A table of `num_embeddings` vectors of length `dim`.
    pub fn new(num_embeddings: usize, dim: usize) -> Self {
        Embedding {
            num_embeddings,
            dim,
            init: Init::Normal {
                mean: 0.0,
                std: 1.0,
            },
        }
    }

    /// The rows at `indices`, as a `[indices.len(), dim]` Var (repeats allowed; the
    /// gradient of a repeated row is the sum of its uses).
    ///
    /// # Panics
    /// When an index is not below `num_embeddings`.
    #[track_caller]
    pub fn lookup<'t, T: Scalar>(&self, indices: &[usize], p: &Params<'t, T>) -> Var<'t, T> {
        let _scope = p.scope("Embedding");
        if let Some(bad) = indices.iter().find(|&&i| i >= self.num_embeddings) {
            panic!(
                "Embedding({} x {}) {:?}: index {bad} is out of range",
                self.num_embeddings,
                self.dim,
                p.prefix()
            );
        }
        p.get("weight").index_select(0, indices)
    }
}

impl<T: Scalar> Module<T> for Embedding {
    fn parameters(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::new(
            "weight",
            &[self.num_embeddings, self.dim],
            self.init,
        )]
    }

    /// Looks up the rows at the indices held (as floats) in `x`.
    ///
    /// # Panics
    /// When a value of `x` is not a whole number in `0..num_embeddings`.
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let value: Tensor<T> = x.value();
        let indices: Vec<usize> = value
            .view()
            .iter()
            .map(|&v| {
                let f = v.as_f64();
                assert!(
                    f >= 0.0 && f.fract() == 0.0 && f < self.num_embeddings as f64,
                    "Embedding({} x {}) {:?}: {f} is not an index in 0..{} (input created at {})",
                    self.num_embeddings,
                    self.dim,
                    p.prefix(),
                    self.num_embeddings,
                    x.location()
                );
                f as usize
            })
            .collect();
        let rows = self.lookup(&indices, p);
        let mut shape: Vec<isize> = value.shape().iter().map(|&d| d as isize).collect();
        shape.push(self.dim as isize);
        rows.reshape(&shape)
    }
}

/// A multilayer perceptron: `Linear(sizes[0] → sizes[1])`, `activation`, …,
/// `Linear(sizes[n−2] → sizes[n−1])`, with no activation after the last layer (it outputs
/// logits or regression values). Layers are numbered as in PyTorch's `nn.Sequential`, the
/// activations included: `mlp(&[64, 128, 10], Relu)` has `"0.weight"`, `"0.bias"`,
/// `"2.weight"`, `"2.bias"`.
///
/// # Panics
/// When `sizes` has fewer than two entries.
pub fn mlp<T: Scalar>(sizes: &[usize], activation: Activation) -> Sequential<T> {
    assert!(
        sizes.len() >= 2,
        "mlp: needs at least an input and an output size, got {sizes:?}"
    );
    let mut model = Sequential::new();
    for (i, pair) in sizes.windows(2).enumerate() {
        if i > 0 {
            model.push(Box::new(activation));
        }
        model.push(Box::new(Linear::new(pair[0], pair[1])));
    }
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss;
    use crate::params::Session;
    use ndarray::{ArrayD, IxDyn, array};
    use retrograd_tape::Tape;
    use retrograd_tape::check::{CheckOptions, check_gradients};

    /// A deterministic array of `shape` with entries in about `[-1.5, 1.5]`, none near 0
    /// (away from the kinks of ReLU and friends).
    fn points(shape: &[usize], salt: u64) -> ArrayD<f64> {
        let mut k = salt;
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((k >> 11) as f64) / ((1u64 << 53) as f64); // [0, 1)
            let m = 0.2 + 1.3 * u;
            if (k >> 7) & 1 == 0 { m } else { -m }
        })
    }

    /// Checks `module`'s gradients with respect to its input and every parameter, at
    /// deterministic points.
    fn check_module(module: &dyn Module<f64>, input_shape: &[usize], opts: &CheckOptions) {
        let specs = module.parameters();
        let mut inputs = vec![points(input_shape, 1)];
        for (i, s) in specs.iter().enumerate() {
            inputs.push(points(&s.shape, 10 + i as u64));
        }
        let names: Vec<String> = specs.into_iter().map(|s| s.name).collect();
        let result = check_gradients(
            |v| {
                let mut p = Params::new(v[0].tape(), 7);
                for (name, var) in names.iter().zip(&v[1..]) {
                    p = p.insert(name, *var);
                }
                module.forward(v[0], &p)
            },
            &inputs,
            opts,
        );
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    #[test]
    fn linear_gradients() {
        let opts = CheckOptions::default();
        check_module(&Linear::new(4, 3), &[5, 4], &opts);
        check_module(&Linear::new(4, 3), &[4], &opts);
        check_module(&Linear::new(3, 2), &[2, 2, 3], &opts);
        check_module(&Linear::new(4, 3).no_bias(), &[2, 4], &opts);
    }

    #[test]
    fn activation_gradients() {
        let opts = CheckOptions::default();
        for act in [
            Activation::Relu,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Gelu,
            Activation::LeakyRelu(0.1),
            Activation::Identity,
        ] {
            check_module(&act, &[3, 4], &opts);
        }
        check_module(&Relu, &[5], &opts);
        check_module(&Tanh, &[5], &opts);
        check_module(&Sigmoid, &[5], &opts);
        check_module(&Gelu, &[5], &opts);
        check_module(&LeakyRelu::default(), &[5], &opts);
    }

    #[test]
    fn layer_norm_gradients() {
        let opts = CheckOptions::default().tolerance(1e-4, 1e-5);
        check_module(&LayerNorm::new(5), &[3, 5], &opts);
        check_module(&LayerNorm::new(4).no_affine().eps(1e-3), &[2, 4], &opts);
    }

    #[test]
    fn layer_norm_normalises_the_last_axis() {
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0)
            .insert("weight", tape.var(array![1.0, 1.0, 1.0, 1.0]))
            .insert("bias", tape.var(array![0.0, 0.0, 0.0, 0.0]));
        let y = LayerNorm::new(4)
            .forward(
                tape.constant(array![[1.0, 2.0, 3.0, 4.0], [-3.0, 0.0, 0.0, 3.0]]),
                &p,
            )
            .array();
        for row in y.rows() {
            let m = row.sum() / 4.0;
            let v = row.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 4.0;
            assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-4, "{row}");
        }
    }

    #[test]
    fn dropout_gradients_and_modes() {
        // The mask is drawn from the pass's seeded stream: every evaluation of the checked
        // function draws the same mask, so finite differences see the same function.
        check_module(&Dropout::new(0.4), &[4, 5], &CheckOptions::default());

        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::ones(IxDyn(&[100, 100])));
        let y = Dropout::new(0.25)
            .forward(x, &Params::new(&tape, 3))
            .array();
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 1e4;
        assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-12));
        // Same seed, same mask; evaluation mode is the identity.
        let again = Dropout::new(0.25)
            .forward(x, &Params::new(&tape, 3))
            .array();
        assert_eq!(y, again);
        let eval = Dropout::new(0.25).forward(x, &Params::new(&tape, 3).training(false));
        assert_eq!(eval.key(), x.key());
        let all = Dropout::new(1.0).forward(x, &Params::new(&tape, 3)).array();
        assert!(all.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn embedding_gradients_and_shapes() {
        let emb = Embedding::new(6, 3);
        let specs = Module::<f64>::parameters(&emb);
        assert_eq!(specs[0].shape, [6, 3]);
        let table = points(&[6, 3], 4);
        // Gradient with respect to the table, with a repeated index.
        let r = check_gradients(
            |v| {
                let p = Params::new(v[0].tape(), 0).insert("weight", v[0]);
                emb.lookup(&[1, 4, 1, 0], &p)
            },
            std::slice::from_ref(&table),
            &CheckOptions::default(),
        );
        assert!(r.is_ok(), "{}", r.unwrap_err());

        // As a module: float indices of shape [2, 2] give [2, 2, 3].
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0).insert("weight", tape.var(table.clone()));
        let y = emb.forward(tape.constant(array![[5.0, 0.0], [2.0, 5.0]]), &p);
        assert_eq!(y.shape().to_vec(), [2, 2, 3]);
        let y = y.array();
        assert_eq!(
            y.slice(ndarray::s![1, 1, ..]),
            table.slice(ndarray::s![5, ..])
        );
        let g = loss::mse(
            &y_var(&tape, &emb, &p),
            &tape.constant(ArrayD::zeros(IxDyn(&[2, 3]))),
        );
        let grads = g.backward().unwrap();
        assert_eq!(grads[p.get("weight")].shape(), &[6, 3]);
    }

    fn y_var<'t>(_tape: &'t Tape<f64>, emb: &Embedding, p: &Params<'t, f64>) -> Var<'t, f64> {
        emb.lookup(&[3, 3], p)
    }

    #[test]
    fn embedding_refuses_bad_indices() {
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0).insert("weight", tape.var(ArrayD::zeros(IxDyn(&[4, 2]))));
        let emb = Embedding::new(4, 2);
        for bad in [4.0, -1.0, 1.5] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                emb.forward(tape.constant(array![0.0, bad]), &p)
            }));
            let msg = *r.unwrap_err().downcast::<String>().unwrap();
            assert!(
                msg.contains("Embedding(4 x 2)") && msg.contains("not an index"),
                "{msg}"
            );
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| emb.lookup(&[9], &p)));
        assert!(r.is_err());
    }

    #[test]
    fn mlp_gradients_with_a_loss() {
        let model = mlp::<f64>(&[3, 4, 2], Activation::Tanh);
        let specs = model.parameters();
        let names: Vec<_> = specs.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        let x = points(&[5, 3], 2);
        let inputs: Vec<_> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| points(&s.shape, 20 + i as u64))
            .collect();
        let r = check_gradients(
            |v| {
                let mut p = Params::new(v[0].tape(), 0);
                for (name, var) in names.iter().zip(v) {
                    p = p.insert(name, *var);
                }
                let logits = model.forward(p.input(x.clone()), &p);
                loss::cross_entropy(&logits, &[0, 1, 1, 0, 1])
            },
            &inputs,
            &CheckOptions::default(),
        );
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[test]
    fn linear_matches_a_hand_computation_and_pytorch_init_bounds() {
        let layer = Linear::new(2, 2);
        let store = Module::<f64>::init_store(&layer, 5);
        let bound = 1.0 / 2f64.sqrt();
        assert!(
            store
                .iter()
                .all(|(_, v)| v.iter().all(|x| x.abs() <= bound))
        );
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0)
            .insert("weight", tape.var(array![[1.0, 2.0], [3.0, 4.0]]))
            .insert("bias", tape.var(array![0.5, -0.5]));
        let y = layer.forward(tape.constant(array![[1.0, 1.0]]), &p);
        assert_eq!(y.array(), array![[3.5, 6.5]].into_dyn());
    }

    #[test]
    fn linear_names_its_bad_input() {
        let tape = Tape::<f32>::new();
        let p = Params::new(&tape, 0).child("encoder");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Linear::new(4, 2).forward(tape.constant(ndarray::Array2::<f32>::zeros((3, 5))), &p)
        }));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("Linear(4 -> 2)") && msg.contains("[3, 5]") && msg.contains("encoder"),
            "{msg}"
        );
    }

    #[test]
    fn eval_of_an_mlp_records_nothing_and_is_deterministic() {
        let model = mlp::<f32>(&[3, 5, 2], Activation::Relu);
        let store = model.init_store(1);
        let x = array![[0.5f32, -1.0, 2.0]];
        let mut s = Session::new(0);
        let a = s.eval(&store, |p| model.forward(p.input(x.clone()), p));
        let b = s.eval(&store, |p| model.forward(p.input(x.clone()), p));
        assert_eq!(a, b);
        assert_eq!(a.shape(), &[1, 2]);
    }
}
