//! The [`Module`] trait, parameter specifications, and [`Sequential`], the layered chain.

use std::fmt;
use std::sync::Arc;

use retrograd_tape::Var;

use crate::init::{Init, rng_from_seed};
use crate::params::Params;
use crate::scalar::Scalar;
use crate::store::ParamStore;

/// One parameter a module needs: its name (relative to the module), its shape and how to
/// initialise it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// The name, e.g. `"weight"`, or `"0.weight"` once a container prefixed it.
    pub name: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// The initialiser [`Module::init_store`] samples it from.
    pub init: Init,
    /// Whether training moves it along its gradient: `false` for a buffer, state the model
    /// keeps beside its parameters (a batch norm's running statistics), which
    /// [`Module::num_parameters`] does not count, as PyTorch's `parameters()` does not.
    pub trained: bool,
}

impl ParamSpec {
    /// A parameter spec: a value training learns.
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init,
            trained: true,
        }
    }

    /// A buffer spec: state stored, saved and restored with the parameters but not
    /// trained (see [`trained`](ParamSpec::trained)).
    pub fn buffer(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
        ParamSpec {
            trained: false,
            ..ParamSpec::new(name, shape, init)
        }
    }
}

/// A parameter of a model that `#[derive(Module)]` registers under its field's name: its
/// shape and initialiser (the values live in a [`ParamStore`], like every parameter's).
///
/// ```
/// use retrograd_nn::{Module, Param, init::Init};
///
/// #[derive(Module)]
/// #[module(crate = retrograd_nn)]
/// struct Scale {
///     gain: Param,
/// }
///
/// impl Scale {
///     fn forward_fields<'t, T: retrograd_nn::Scalar>(
///         &self,
///         x: retrograd_tape::Var<'t, T>,
///         p: ScaleParams<'t, T>,
///     ) -> retrograd_tape::Var<'t, T> {
///         x * p.gain
///     }
/// }
///
/// let model = Scale { gain: Param::new(&[3], Init::Constant(2.0)) };
/// let store = Module::<f64>::init_store(&model, 0);
/// assert_eq!(store.names().collect::<Vec<_>>(), ["gain"]);
/// assert_eq!(store.get("gain").unwrap().as_slice().unwrap(), &[2.0, 2.0, 2.0]);
/// ```
///
/// A misspelt name is refused by the compiler (`no field `gian` on type `ScaleParams``),
/// not found at run time:
///
/// ```compile_fail
/// use retrograd_nn::{Param, init::Init};
/// #[derive(retrograd_nn::Module)]
/// #[module(scalar = f64, crate = retrograd_nn)]
/// struct Scale { gain: Param }
/// impl Scale {
///     fn forward_fields<'t>(
///         &self,
///         x: retrograd_tape::Var<'t, f64>,
///         p: ScaleParams<'t, f64>,
///     ) -> retrograd_tape::Var<'t, f64> {
///         x * p.gian
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The shape.
    pub shape: Vec<usize>,
    /// The initialiser [`Module::init_store`] samples it from.
    pub init: Init,
}

impl Param {
    /// A parameter of `shape`, initialised by `init`.
    pub fn new(shape: &[usize], init: Init) -> Self {
        Param {
            shape: shape.to_vec(),
            init,
        }
    }

    /// Its specification under `name`.
    pub fn spec(&self, name: &str) -> ParamSpec {
        ParamSpec::new(name, &self.shape, self.init)
    }
}

/// `specs` with every name put under `prefix` (`"weight"` becomes `"prefix.weight"`), for a
/// container listing a child's parameters.
pub fn prefixed(prefix: &str, specs: Vec<ParamSpec>) -> Vec<ParamSpec> {
    specs
        .into_iter()
        .map(|mut s| {
            s.name = if s.name.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}.{}", s.name)
            };
            s
        })
        .collect()
}

/// A layer or a model: a function `y = f(x, θ)` of an input and named parameters.
///
/// Implementors list the parameters they need ([`parameters`](Module::parameters)) and
/// compute on a tape ([`forward`](Module::forward)), reading each parameter with
/// `p.get(name)`. Containers prefix their children's names and pass them `p.child(name)`.
///
/// A module is configuration only (sizes, initialisers, a dropout rate); its parameters
/// live in a [`ParamStore`] under the names the module lists. That split is what lets the
/// store outlive tapes: a training step enters the store's arrays on a fresh tape, and the
/// module's `forward` reads them back by name from a [`Params`].
///
/// Names nest like PyTorch's `state_dict` keys: a [`Sequential`] numbers its children
/// (`"0.weight"`, `"2.bias"`), and a struct that holds a Sequential called `encoder` lists
/// its parameters under `"encoder."`.
///
/// # `#[derive(Module)]`: a model without boilerplate
///
/// For a struct whose fields are its parts, the derive writes `parameters` and `forward`
/// from the field names, and you write the computation once, reading each part's
/// parameters as a field of a generated struct, so that a misspelt name is a compile error
/// rather than a panic at run time:
///
/// - a field of type [`Param`] is one parameter, named after the field;
/// - a field marked `#[module(skip)]` is configuration (a size, a flag) and is left out;
/// - every other field is a sub-module (a layer, a [`Sequential`], another derived model):
///   its parameters are listed under the field's name (`"encoder.0.weight"`).
///
/// The derive generates `{Name}Params<'t, T>`, with one public field per part (a
/// [`Params`] view for a sub-module, a `Var` for a [`Param`]), and implements
/// `Module::forward` by calling your inherent method
/// `fn forward_fields<'t>(&self, x: Var<'t, T>, p: {Name}Params<'t, T>) -> Var<'t, T>`.
///
/// The scalar type is the struct's first type parameter; without one the model is a
/// `Module<T>` for every [`Scalar`] its fields support, and `forward_fields` is generic
/// too; `#[module(scalar = f32)]` fixes it (needed when a field is, say, a
/// `Sequential<f32>`). The expansion names `::retrograd::nn`; a crate that depends on
/// `retrograd-nn` directly says `#[module(crate = retrograd_nn)]`.
///
/// ```
/// use retrograd_nn::layers::{Activation, Dropout, LayerNorm, Linear, mlp};
/// use retrograd_nn::{Module, Param, Sequential, init::Init};
/// use retrograd_tape::Var;
///
/// #[derive(Module)]
/// #[module(scalar = f32, crate = retrograd_nn)]
/// struct Classifier {
///     encoder: Sequential<f32>,
///     norm: LayerNorm,
///     drop: Dropout,
///     head: Linear,
///     temperature: Param,
///     #[module(skip)]
///     classes: usize,
/// }
///
/// impl Classifier {
///     fn forward_fields<'t>(&self, x: Var<'t, f32>, p: ClassifierParams<'t, f32>) -> Var<'t, f32> {
///         let h = self.encoder.forward(x, &p.encoder);
///         let h = self.drop.forward(self.norm.forward(h, &p.norm), &p.drop);
///         self.head.forward(h, &p.head) / p.temperature
///     }
/// }
///
/// let model = Classifier {
///     encoder: mlp(&[8, 16, 16], Activation::Relu),
///     norm: LayerNorm::new(16),
///     drop: Dropout::new(0.1),
///     head: Linear::new(16, 3),
///     temperature: Param::new(&[1], Init::Constant(1.0)),
///     classes: 3,
/// };
/// let store = model.init_store(0);
/// assert_eq!(
///     store.names().collect::<Vec<_>>(),
///     ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
///      "norm.weight", "norm.bias", "head.weight", "head.bias", "temperature"]
/// );
/// # let (_, grads) = retrograd_nn::train_step(&store, 0, |p| {
/// #     model.forward(p.input(ndarray::Array2::<f32>::ones((2, 8))), p).sum_all()
/// # })?;
/// # assert_eq!(grads.len(), store.len());
/// # assert_eq!(model.classes, 3);
/// # use retrograd_ops::prelude::*;
/// # Ok::<(), retrograd_tape::Error>(())
/// ```
///
/// # By hand
///
/// The same, written out: list the parameters (a child's under its name, with
/// [`prefixed`]) and hand each child `p.child(name)`:
///
/// ```
/// use retrograd_nn::{Module, ParamSpec, Params, prefixed, layers::{mlp, Activation, Linear}, Sequential};
/// use retrograd_tape::Var;
///
/// struct AutoEncoder { encoder: Sequential<f32>, decoder: Linear }
///
/// impl Module<f32> for AutoEncoder {
///     fn parameters(&self) -> Vec<ParamSpec> {
///         let mut specs = prefixed("encoder", Module::<f32>::parameters(&self.encoder));
///         specs.extend(prefixed("decoder", Module::<f32>::parameters(&self.decoder)));
///         specs
///     }
///     fn forward<'t>(&self, x: Var<'t, f32>, p: &Params<'t, f32>) -> Var<'t, f32> {
///         let code = self.encoder.forward(x, &p.child("encoder"));
///         self.decoder.forward(code, &p.child("decoder"))
///     }
/// }
///
/// let model = AutoEncoder { encoder: mlp(&[8, 4, 2], Activation::Relu), decoder: Linear::new(2, 8) };
/// let store = model.init_store(0);
/// assert_eq!(
///     store.names().collect::<Vec<_>>(),
///     ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
///      "decoder.weight", "decoder.bias"]
/// );
/// ```
pub trait Module<T: Scalar>: Send + Sync {
    /// The parameters this module reads in `forward`, with their shapes and initialisers,
    /// in a stable order (the store's and the checkpoint's order).
    fn parameters(&self) -> Vec<ParamSpec>;

    /// The output for input `x`, reading parameters from `p`.
    ///
    /// The layers of this crate are `#[track_caller]`: the ops they record carry the line
    /// of your code that ran the model, and [`Params::scope`] names the layer. A layer of
    /// your own records its own lines unless you mark its `forward` `#[track_caller]` too.
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T>;

    /// [`forward`](Module::forward), for containers that hold layers as
    /// `Box<dyn Module>` ([`Sequential`]): called through it, a `#[track_caller]` layer
    /// still records the line that ran the container (a plain call through `dyn` would
    /// record the layer's own definition). Not meant to be overridden.
    #[track_caller]
    fn forward_tracked<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        self.forward(x, p)
    }

    /// A new store holding every parameter, sampled from its initialiser with the random
    /// stream of `seed` (in [`parameters`](Module::parameters) order, so the same seed
    /// gives the same model).
    fn init_store(&self, seed: u64) -> ParamStore<T> {
        let mut rng = rng_from_seed(seed);
        let mut store = ParamStore::new();
        for spec in self.parameters() {
            let value = spec.init.sample(&spec.shape, &mut rng);
            assert!(
                store.insert(spec.name.clone(), value).is_none(),
                "init_store: the parameter name {:?} appears twice",
                spec.name
            );
        }
        store
    }

    /// The number of scalars training learns: every parameter's elements, buffers (a batch
    /// norm's running statistics) left out.
    fn num_parameters(&self) -> usize {
        self.parameters()
            .iter()
            .filter(|s| s.trained)
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }
}

impl<T: Scalar, M: Module<T> + ?Sized> Module<T> for Box<M> {
    fn parameters(&self) -> Vec<ParamSpec> {
        (**self).parameters()
    }
    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        (**self).forward_tracked(x, p)
    }
}

/// The layered chain `f(x) = L^l(… L^1(x, θ^1) …, θ^l)`: children applied in order, each
/// under its own name (its position, `"0"`, `"1"`, … by default, as PyTorch's
/// `nn.Sequential`).
///
/// ```
/// use retrograd_nn::{Module, Sequential, layers::{Linear, Relu}};
/// let model = Sequential::<f32>::new().append(Linear::new(4, 8)).append(Relu).append(Linear::new(8, 2));
/// let names: Vec<_> = model.parameters().into_iter().map(|s| s.name).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
/// ```
pub struct Sequential<T: Scalar> {
    /// Shared, so that a checkpointed segment's block can own its layers.
    pub(crate) layers: Vec<(String, Arc<dyn Module<T>>)>,
    /// Layers per checkpointed segment ([`Sequential::checkpoint_every`]).
    pub(crate) checkpoint_every: Option<usize>,
}

impl<T: Scalar> Default for Sequential<T> {
    fn default() -> Self {
        Sequential {
            layers: Vec::new(),
            checkpoint_every: None,
        }
    }
}

impl<T: Scalar> fmt::Debug for Sequential<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.layers.iter().map(|(n, _)| n))
            .finish()
    }
}

impl<T: Scalar> Sequential<T> {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer named by its position.
    pub fn append(self, layer: impl Module<T> + 'static) -> Self {
        let name = self.layers.len().to_string();
        self.append_named(name, layer)
    }

    /// Appends a layer under `name`.
    ///
    /// # Panics
    /// When `name` is empty, contains a `.`, or is taken.
    pub fn append_named(
        mut self,
        name: impl Into<String>,
        layer: impl Module<T> + 'static,
    ) -> Self {
        let name = name.into();
        assert!(
            !name.is_empty() && !name.contains('.'),
            "Sequential: layer names must be non-empty and contain no '.', got {name:?}"
        );
        assert!(
            self.layers.iter().all(|(n, _)| *n != name),
            "Sequential: a layer is already called {name:?}"
        );
        self.layers.push((name, Arc::new(layer)));
        self
    }

    /// Appends a boxed layer named by its position (for layers chosen at run time).
    pub fn push(&mut self, layer: Box<dyn Module<T>>) {
        let name = self.layers.len().to_string();
        self.layers.push((name, Arc::from(layer)));
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the chain has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|(n, _)| n.as_str())
    }
}

impl<T: Scalar> Module<T> for Sequential<T> {
    fn parameters(&self) -> Vec<ParamSpec> {
        self.layers
            .iter()
            .flat_map(|(name, layer)| prefixed(name, layer.parameters()))
            .collect()
    }

    #[track_caller]
    fn forward<'t>(&self, x: Var<'t, T>, p: &Params<'t, T>) -> Var<'t, T> {
        if let Some(k) = self.checkpoint_every {
            return self.forward_checkpointed(x, p, k);
        }
        // A loop, not a fold: a closure would not pass the caller's line on.
        let mut x = x;
        for (name, layer) in &self.layers {
            x = layer.forward_tracked(x, &p.child(name));
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Linear, Relu};

    #[test]
    fn sequential_names_and_nesting() {
        let inner = Sequential::<f64>::new()
            .append(Linear::new(3, 4))
            .append(Relu);
        let outer = Sequential::<f64>::new()
            .append_named("encoder", inner)
            .append_named("head", Linear::new(4, 2).no_bias());
        let names: Vec<_> = outer.parameters().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["encoder.0.weight", "encoder.0.bias", "head.weight"]);
        assert_eq!(outer.names().collect::<Vec<_>>(), ["encoder", "head"]);
        assert_eq!(outer.num_parameters(), 12 + 4 + 8);
        let a = outer.init_store(5);
        assert_eq!(a, outer.init_store(5));
        assert_ne!(a, outer.init_store(6));
        assert_eq!(format!("{outer:?}"), r#"["encoder", "head"]"#);
    }

    /// A dump of a model's step names the line that ran the model and, per op, the layer.
    #[test]
    fn a_model_dump_names_the_callers_line_and_the_layer() {
        use crate::layers::{Activation, mlp};
        let model = Sequential::<f64>::new()
            .append_named("encoder", mlp(&[3, 4, 2], Activation::Tanh))
            .append_named("head", Linear::new(2, 1));
        let store = model.init_store(0);
        let tape = retrograd_tape::Tape::<f64>::new();
        let p = Params::from_store(&tape, &store, true, 0);
        let x = p.input(ndarray::Array2::<f64>::ones((5, 3)));
        let line = line!() + 1;
        let y = model.forward(x, &p);
        let here = format!("{}:{line}:", file!());
        let nodes = tape.nodes();
        let ops: Vec<_> = nodes
            .iter()
            .filter(|n| n.op != "var" && n.op != "constant")
            .collect();
        assert_eq!(ops.len(), 7, "{}", tape.dump()); // 3 x (matmul, add) + tanh
        for n in &ops {
            assert!(n.location.to_string().starts_with(&here), "{}", tape.dump());
        }
        let scopes: Vec<_> = ops.iter().map(|n| n.scope.as_deref().unwrap()).collect();
        assert_eq!(
            scopes,
            [
                "encoder.0 (Linear)",
                "encoder.0 (Linear)",
                "encoder.1 (Tanh)",
                "encoder.2 (Linear)",
                "encoder.2 (Linear)",
                "head (Linear)",
                "head (Linear)"
            ]
        );
        assert_eq!(tape.node_info(y).scope.as_deref(), Some("head (Linear)"));
        let dump = tape.dump().to_string();
        assert!(
            dump.contains("scope") && dump.contains("encoder.2 (Linear)"),
            "{dump}"
        );
    }

    #[test]
    #[should_panic(expected = "already called \"x\"")]
    fn duplicate_names_are_refused() {
        let _ = Sequential::<f32>::new()
            .append_named("x", Relu)
            .append_named("x", Relu);
    }

    #[test]
    #[should_panic(expected = "contain no '.'")]
    fn dotted_names_are_refused() {
        let _ = Sequential::<f32>::new().append_named("a.b", Relu);
    }
}
