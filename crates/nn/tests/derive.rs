//! `#[derive(Module)]` as a user meets it: names, nesting, generic scalars, gradients.

use ndarray::{Array2, array};
use retrograd_nn::init::Init;
use retrograd_nn::layers::{Activation, Linear, Relu, mlp};
use retrograd_nn::{Module, Param, Params, Scalar, Sequential, prefixed, train_step};
use retrograd_ops::prelude::*;

/// Generic over the scalar through its own type parameter, with a skipped field.
#[derive(Module)]
#[module(crate = retrograd_nn)]
struct Block<T: Scalar> {
    body: Sequential<T>,
    shift: Param,
    #[module(skip)]
    width: usize,
}

impl<T: Scalar> Block<T> {
    fn forward_fields<'t>(&self, x: Var<'t, T>, p: BlockParams<'t, T>) -> Var<'t, T> {
        self.body.forward(x, &p.body) + p.shift
    }
}

/// No type parameter: a model for every scalar; it nests a derived model.
#[derive(Module)]
#[module(crate = retrograd_nn)]
struct Net {
    first: Linear,
    act: Relu,
    last: Linear,
}

impl Net {
    fn forward_fields<'t, T: Scalar>(&self, x: Var<'t, T>, p: NetParams<'t, T>) -> Var<'t, T> {
        let h = self.act.forward(self.first.forward(x, &p.first), &p.act);
        self.last.forward(h, &p.last)
    }
}

#[derive(Module)]
#[module(scalar = f64, crate = retrograd_nn)]
struct Outer {
    block: Block<f64>,
    net: Net,
}

impl Outer {
    fn forward_fields<'t>(&self, x: Var<'t, f64>, p: OuterParams<'t, f64>) -> Var<'t, f64> {
        self.net.forward(self.block.forward(x, &p.block), &p.net)
    }
}

fn block(width: usize) -> Block<f64> {
    Block {
        body: mlp(&[width, 4, width], Activation::Tanh),
        shift: Param::new(&[width], Init::Constant(0.5)),
        width,
    }
}

fn outer() -> Outer {
    Outer {
        block: block(3),
        net: Net {
            first: Linear::new(3, 5),
            act: Relu,
            last: Linear::new(5, 2),
        },
    }
}

#[test]
fn names_follow_the_fields_in_declaration_order() {
    let model = outer();
    let names: Vec<_> = Module::<f64>::parameters(&model)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        [
            "block.body.0.weight",
            "block.body.0.bias",
            "block.body.2.weight",
            "block.body.2.bias",
            "block.shift",
            "net.first.weight",
            "net.first.bias",
            "net.last.weight",
            "net.last.bias",
        ]
    );
    assert_eq!(model.block.width, 3);
    // The shapes and initialisers are the fields' own.
    let store = model.init_store(7);
    assert_eq!(
        store.get("block.shift").unwrap(),
        &array![0.5, 0.5, 0.5].into_dyn()
    );
    assert_eq!(store.get("net.first.weight").unwrap().shape(), &[5, 3]);
}

/// The derived model is the same model as one written by hand: same store, same output,
/// same gradients.
#[test]
fn a_derived_model_computes_what_the_hand_written_one_does() {
    struct ByHand(Net);
    impl Module<f32> for ByHand {
        fn parameters(&self) -> Vec<retrograd_nn::ParamSpec> {
            let mut specs = prefixed("first", Module::<f32>::parameters(&self.0.first));
            specs.extend(prefixed("last", Module::<f32>::parameters(&self.0.last)));
            specs
        }
        fn forward<'t>(&self, x: Var<'t, f32>, p: &Params<'t, f32>) -> Var<'t, f32> {
            let h = self.0.first.forward(x, &p.child("first")).relu();
            self.0.last.forward(h, &p.child("last"))
        }
    }
    let net = || Net {
        first: Linear::new(3, 5),
        act: Relu,
        last: Linear::new(5, 2),
    };
    let (derived, by_hand) = (net(), ByHand(net()));
    let store = Module::<f32>::init_store(&derived, 3);
    assert_eq!(store, by_hand.init_store(3));
    let x = Array2::from_shape_fn((4, 3), |(i, j)| (i as f32 - j as f32) * 0.3);
    let run = |m: &dyn Module<f32>| {
        train_step(&store, 0, |p| {
            m.forward(p.input(x.clone()), p).square().sum_all()
        })
        .unwrap()
    };
    let ((l1, g1), (l2, g2)) = (run(&derived), run(&by_hand));
    assert_eq!(l1, l2);
    assert_eq!(g1, g2);
    assert_eq!(g1.len(), 4);
}

#[test]
fn gradients_reach_every_field() {
    let model = outer();
    let store = model.init_store(1);
    let (_, grads) = train_step(&store, 0, |p| {
        model
            .forward(p.input(array![[0.1, -0.2, 0.3]]), p)
            .square()
            .sum_all()
    })
    .unwrap();
    for name in store.names() {
        assert!(grads.contains(name), "no gradient for {name}");
    }
}

/// A dump of a derived model's step names the caller's line and, per op, the part of the
/// model that recorded it: the layer, or the derived model itself for its own ops.
#[test]
fn dumps_name_the_part_of_the_model() {
    let model = outer();
    let store = model.init_store(1);
    let tape = retrograd_tape::Tape::<f64>::new();
    let p = Params::from_store(&tape, &store, true, 0);
    let y = model.forward(p.input(array![[0.1, -0.2, 0.3]]), &p);
    let dump = tape.dump().to_string();
    let shift = tape.nodes().into_iter().find(|n| {
        n.op == "add"
            && n.inputs
                .iter()
                .any(|&i| tape.nodes()[i].label.as_deref() == Some("block.shift"))
    });
    assert_eq!(
        shift.unwrap().scope.as_deref(),
        Some("block (Block)"),
        "{dump}"
    );
    assert_eq!(
        tape.node_info(y).scope.as_deref(),
        Some("net.last (Linear)")
    );
    assert!(
        dump.contains("block.body.1 (Tanh)") && dump.contains("net.act (Relu)"),
        "{dump}"
    );
    // Every op carries a line of this file: the model's own code, never the library's.
    for n in tape.nodes() {
        assert!(n.location.file.ends_with("derive.rs"), "{dump}");
    }
}
