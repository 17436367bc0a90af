//! Convolutional layers: [`Conv1d`], [`Conv2d`], [`MaxPool2d`], [`AvgPool2d`],
//! [`AdaptiveAvgPool2d`] and [`Flatten`], with PyTorch's layouts, parameter names and
//! default initialisation, so a `state_dict` maps onto a [`ParamStore`](crate::ParamStore)
//! name for name.
//!
//! ```
//! use retrograd_nn::{Module, Sequential, Session};
//! use retrograd_nn::conv::{Conv2d, Flatten, MaxPool2d};
//! use retrograd_nn::layers::{Linear, Relu};
//! let model = Sequential::<f32>::new()
//!     .append(Conv2d::new(1, 8, 3).padding(1)) // [N, 1, 8, 8] -> [N, 8, 8, 8]
//!     .append(Relu)
//!     .append(MaxPool2d::new(2)) // -> [N, 8, 4, 4]
//!     .append(Flatten)
//!     .append(Linear::new(8 * 4 * 4, 10));
//! let names: Vec<_> = model.parameters().into_iter().map(|s| s.name).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "4.weight", "4.bias"]);
//! let store = model.init_store(0);
//! let x = ndarray::Array4::<f32>::zeros((2, 1, 8, 8));
//! let logits = Session::new(0).eval(&store, |p| model.forward(p.input(x.clone()), p));
//! assert_eq!(logits.shape(), &[2, 10]);
//! ```

use retrograd_ops::conv::{ConvSpec, Padding, Pair, PoolSpec};
use retrograd_ops::prelude::*;
use retrograd_tape::Var;

use crate::init::{FanMode, Init};
use crate::module::{Module, ParamSpec};
use crate::params::Params;
use crate::scalar::Scalar;

/// A convolution layer over `D` spatial axes, `y = conv(x, weight) + bias`, with PyTorch's
/// layout: `weight` is `[out_channels, in_channels/groups, kernel...]`, `bias` is
/// `[out_channels]`. Use it as [`Conv1d`] (`[N, C, L]` inputs) or [`Conv2d`]
/// (`[N, C, H, W]`).
///
/// Initialisation is PyTorch's default: `weight` and `bias` uniform on `±1/√fan_in`,
/// `fan_in = in_channels/groups · kernel area` (Kaiming-uniform with gain `√(1/3)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv<const D: usize> {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel extents `[kh, kw]` (`kh = 1` for [`Conv1d`]).
    pub kernel: [usize; 2],
    /// Stride, padding, dilation and groups.
    pub spec: ConvSpec,
    /// Whether the layer adds a bias.
    pub bias: bool,
    /// The weight's initialiser.
    pub weight_init: Init,
    /// The bias's initialiser (`None`: PyTorch's `±1/√fan_in`).
    pub bias_init: Option<Init>,
}

/// A 1-D convolution layer (`[N, C, L]` inputs, `weight [out, in/groups, k]`).
pub type Conv1d = Conv<1>;
/// A 2-D convolution layer (`[N, C, H, W]` inputs, `weight [out, in/groups, kh, kw]`).
pub type Conv2d = Conv<2>;

impl<const D: usize> Conv<D> {
    /// A layer from `in_channels` to `out_channels` with a `kernel` (one number, or
    /// `[kh, kw]` for 2-D), stride 1, no padding, a bias and PyTorch's initialisation.
    ///
    /// # Panics
    /// When a channel count or the kernel is 0.
    pub fn new(in_channels: usize, out_channels: usize, kernel: impl Into<Pair>) -> Self {
        let mut kernel = kernel.into().0;
        if D == 1 {
            kernel[0] = 1;
        }
        assert!(
            in_channels > 0 && out_channels > 0 && !kernel.contains(&0),
            "Conv{D}d: channels and kernel must be at least 1, got {in_channels} -> {out_channels}, kernel {kernel:?}"
        );
        Conv {
            in_channels,
            out_channels,
            kernel,
            spec: ConvSpec::new(),
            bias: true,
            weight_init: Init::KaimingUniform {
                gain: (1.0f64 / 3.0).sqrt(),
                mode: FanMode::FanIn,
            },
            bias_init: None,
        }
    }

    /// Sets the stride.
    pub fn stride(mut self, stride: impl Into<Pair>) -> Self {
        self.spec = self.spec.stride(stride);
        self
    }

    /// Sets the padding (a number, `[ph, pw]`, or `Padding::Same`).
    pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
        self.spec = self.spec.padding(padding);
        self
    }

    /// Sets the dilation.
    pub fn dilation(mut self, dilation: impl Into<Pair>) -> Self {
        self.spec = self.spec.dilation(dilation);
        self
    }

    /// Sets the channel groups (both channel counts must be multiples; `groups =
    /// in_channels` is a depthwise convolution).
    pub fn groups(mut self, groups: usize) -> Self {
        self.spec = self.spec.groups(groups);
        self
    }

    /// Without a bias.
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
        self.bias_init = Some(init);
        self
    }

    fn weight_shape(&self) -> Vec<usize> {
        let mut shape = vec![
            self.out_channels,
            self.in_channels / self.spec.groups.max(1),
        ];
        shape.extend_from_slice(&self.kernel[2 - D..]);
        shape
    }
}

impl<T: Scalar, const D: usize> Module<T> for Conv<D> {
    fn parameters(&self) -> Vec<ParamSpec> {
        let shape = self.weight_shape();
        let mut specs = vec![ParamSpec::new("weight", &shape, self.weight_init)];
        if self.bias {
            let fan_in: usize = shape[1..].iter().product();
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let init = self.bias_init.unwrap_or(Init::Uniform {
                low: -bound,
                high: bound,
            });
            specs.push(ParamSpec::new("bias", &[self.out_channels], init));
        }
        specs
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        let w = p.get("weight");
        let y = if D == 1 {
            x.conv1d(&w, self.spec)
        } else {
            x.conv2d(&w, self.spec)
        };
        if !self.bias {
            return y;
        }
        let mut shape = vec![self.out_channels as isize];
        shape.extend(std::iter::repeat_n(1, D));
        y + p.get("bias").reshape(&shape)
    }
}

/// Max pooling over `[N, C, H, W]` windows (PyTorch's `MaxPool2d`; the stride defaults to
/// the kernel). No parameters.
///
/// ```
/// use retrograd_nn::conv::MaxPool2d;
/// // PyTorch's MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True)
/// let pool = MaxPool2d::new(3).stride(2).padding(1).ceil_mode(true);
/// assert!(pool.0.ceil_mode);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d(pub PoolSpec);

impl MaxPool2d {
    /// Windows of `kernel` with stride `kernel`, no padding, dilation 1, floor mode.
    pub fn new(kernel: impl Into<Pair>) -> Self {
        MaxPool2d(PoolSpec::new(kernel))
    }

    /// Sets the stride.
    pub fn stride(self, stride: impl Into<Pair>) -> Self {
        MaxPool2d(self.0.stride(stride))
    }

    /// Sets the padding on each side (at most half the kernel; padding never wins).
    pub fn padding(self, padding: impl Into<Pair>) -> Self {
        MaxPool2d(self.0.padding(padding))
    }

    /// Sets the spacing between a window's taps.
    pub fn dilation(self, dilation: impl Into<Pair>) -> Self {
        MaxPool2d(self.0.dilation(dilation))
    }

    /// Keeps a last, partial window (PyTorch's `ceil_mode=True`).
    pub fn ceil_mode(self, ceil_mode: bool) -> Self {
        MaxPool2d(self.0.ceil_mode(ceil_mode))
    }
}

impl<T: Scalar> Module<T> for MaxPool2d {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, _: &Params<'t, T>) -> Var<'t, T> {
        x.max_pool2d(self.0)
    }
}

/// Average pooling over `[N, C, H, W]` windows (PyTorch's `AvgPool2d`; by default the
/// padding counts in the divisor, as there). No parameters.
///
/// ```
/// use retrograd_nn::conv::AvgPool2d;
/// // PyTorch's AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False)
/// let pool = AvgPool2d::new(2).padding(1).ceil_mode(true).count_include_pad(false);
/// assert!(!pool.0.count_include_pad);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d(pub PoolSpec);

impl AvgPool2d {
    /// Windows of `kernel` with stride `kernel`, no padding, floor mode, padding counted.
    pub fn new(kernel: impl Into<Pair>) -> Self {
        AvgPool2d(PoolSpec::new(kernel))
    }

    /// Sets the stride.
    pub fn stride(self, stride: impl Into<Pair>) -> Self {
        AvgPool2d(self.0.stride(stride))
    }

    /// Sets the zero padding on each side (at most half the kernel).
    pub fn padding(self, padding: impl Into<Pair>) -> Self {
        AvgPool2d(self.0.padding(padding))
    }

    /// Keeps a last, partial window (PyTorch's `ceil_mode=True`).
    pub fn ceil_mode(self, ceil_mode: bool) -> Self {
        AvgPool2d(self.0.ceil_mode(ceil_mode))
    }

    /// Whether the padding counts in the divisor (PyTorch's `count_include_pad`, default
    /// `true`); `false` averages only the input entries a window covers.
    pub fn count_include_pad(self, count_include_pad: bool) -> Self {
        AvgPool2d(self.0.count_include_pad(count_include_pad))
    }
}

impl<T: Scalar> Module<T> for AvgPool2d {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, _: &Params<'t, T>) -> Var<'t, T> {
        x.avg_pool2d(self.0)
    }
}

/// Average pooling to a fixed output size `[OH, OW]` whatever the input's (PyTorch's
/// `AdaptiveAvgPool2d`). `AdaptiveAvgPool2d([1, 1])` then [`Flatten`] is global average
/// pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d(pub [usize; 2]);

impl<T: Scalar> Module<T> for AdaptiveAvgPool2d {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, _: &Params<'t, T>) -> Var<'t, T> {
        x.adaptive_avg_pool2d(self.0)
    }
}

/// Flattens every axis after the first: `[N, C, H, W] → [N, C·H·W]` (PyTorch's `Flatten`
/// with its defaults), between convolutional features and a linear head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flatten;

impl<T: Scalar> Module<T> for Flatten {
    fn parameters(&self) -> Vec<ParamSpec> {
        Vec::new()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, _: &Params<'t, T>) -> Var<'t, T> {
        let shape = x.shape();
        assert!(
            !shape.is_empty(),
            "Flatten: needs a batch axis, got a scalar (created at {})",
            x.location()
        );
        x.reshape(&[shape[0] as isize, -1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Sequential;
    use crate::layers::Relu;
    use ndarray::{ArrayD, Dimension, IxDyn};
    use retrograd_tape::Tape;
    use retrograd_tape::check::{CheckOptions, check_gradients};

    fn smooth(shape: &[usize], k: f64) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(shape), |i| {
            (i.slice()
                .iter()
                .enumerate()
                .map(|(a, &v)| (a + 1) * v)
                .sum::<usize>() as f64
                * k)
                .sin()
        })
    }

    /// Checks a module's gradients in its input and every parameter (to second order).
    fn check_module(model: &dyn Module<f64>, input: &[usize]) {
        let specs = model.parameters();
        let mut inputs = vec![smooth(input, 0.37)];
        inputs.extend(
            specs
                .iter()
                .enumerate()
                .map(|(i, s)| smooth(&s.shape, 0.53 + i as f64 * 0.1)),
        );
        let r = check_gradients(
            |v| {
                let tape = v[0].tape();
                let mut p = Params::new(tape, 0);
                for (s, var) in specs.iter().zip(&v[1..]) {
                    p = p.insert(&s.name, *var);
                }
                let y = model.forward(v[0], &p);
                (y * y).sum_all()
            },
            &inputs,
            &CheckOptions::default(),
        );
        assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[test]
    fn layers_have_pytorch_names_shapes_and_init_bounds() {
        let conv = Conv2d::new(4, 6, [3, 5]).groups(2).padding(1);
        let specs = Module::<f32>::parameters(&conv);
        assert_eq!(specs[0].name, "weight");
        assert_eq!(specs[0].shape, [6, 2, 3, 5]);
        assert_eq!(specs[1].shape, [6]);
        let store = Module::<f64>::init_store(&conv, 3);
        let bound = 1.0 / (2.0f64 * 15.0).sqrt();
        for name in ["weight", "bias"] {
            let v = store.get(name).unwrap();
            assert!(v.iter().all(|x| x.abs() <= bound), "{name}");
            assert!(v.iter().any(|x| x.abs() > bound / 2.0), "{name}");
        }
        let conv1 = Conv1d::new(3, 2, 4);
        assert_eq!(Module::<f32>::parameters(&conv1)[0].shape, [2, 3, 4]);
    }

    #[test]
    fn small_cnn_gradients_check() {
        let model = Sequential::<f64>::new()
            .append(Conv2d::new(2, 3, 3).padding(1))
            .append(Relu)
            .append(AvgPool2d::new(2))
            .append(Conv2d::new(3, 2, 2).stride(1))
            .append(AdaptiveAvgPool2d([1, 1]))
            .append(Flatten);
        check_module(&model, &[2, 2, 4, 4]);
        let model = Sequential::<f64>::new().append(Conv1d::new(2, 3, 3).padding(1).dilation(1));
        check_module(&model, &[2, 2, 5]);
    }

    #[test]
    fn pooling_layers_take_pytorchs_options() {
        // A ResNet stem's pool, MaxPool2d(3, 2, 1, ceil_mode=True): 8 -> 5 (4 in floor mode).
        let stem = MaxPool2d::new(3).stride(2).padding(1);
        let tape = Tape::<f64>::new();
        let p = Params::new(&tape, 0);
        let x = tape.constant(smooth(&[1, 2, 8, 8], 0.41));
        let floor = Module::<f64>::forward(&stem, x, &p);
        let ceil = Module::<f64>::forward(&stem.ceil_mode(true), x, &p);
        assert_eq!(floor.shape().as_slice(), &[1, 2, 4, 4]);
        assert_eq!(ceil.shape().as_slice(), &[1, 2, 5, 5]);
        // Without counting the padding, a constant input stays constant at the edges.
        let ones = tape.constant(ArrayD::ones(IxDyn(&[1, 1, 3, 3])));
        let avg = AvgPool2d::new(2).padding(1);
        let with_pad = Module::<f64>::forward(&avg, ones, &p).array();
        let without = Module::<f64>::forward(&avg.count_include_pad(false), ones, &p).array();
        assert_eq!(with_pad[[0, 0, 0, 0]], 0.25);
        assert!(without.iter().all(|&v| v == 1.0), "{without}");
        let dilated = MaxPool2d::new(2).stride(1).dilation(2);
        assert_eq!(
            Module::<f64>::forward(&dilated, x, &p).shape().as_slice(),
            &[1, 2, 6, 6]
        );
        let model = Sequential::<f64>::new()
            .append(
                AvgPool2d::new(3)
                    .stride(2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
            )
            .append(dilated.ceil_mode(true));
        check_module(&model, &[1, 2, 6, 6]);
    }

    #[test]
    fn shapes_through_a_lenet_block() {
        let tape = Tape::<f32>::new();
        let model = Sequential::<f32>::new()
            .append(Conv2d::new(1, 6, 5))
            .append(MaxPool2d::new(2))
            .append(Conv2d::new(6, 16, 5))
            .append(MaxPool2d::new(2))
            .append(Flatten);
        let store = model.init_store(0);
        let p = Params::from_store(&tape, &store, true, 0);
        let y = model.forward(tape.constant(ArrayD::zeros(IxDyn(&[3, 1, 28, 28]))), &p);
        assert_eq!(y.shape().as_slice(), &[3, 16 * 4 * 4]);
    }
}
