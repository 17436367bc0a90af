//! retrograd's derivatives at kinks and ties, against PyTorch's and JAX's own answers.
//!
//! `tests/reference/kinks.json` holds, for each case (an op at points on and beside its
//! kinks or ties), the gradients (VJP with the case's cotangent) and output tangent (JVP
//! with the case's tangents) that each framework call computes; `tests/reference/kinks.py`
//! wrote it with PyTorch and JAX in float64 (its header says how to rerun it). This test
//! computes the same with retrograd and checks, for every answer in the fixture, that
//! retrograd agrees exactly when [`CLAIMS`] says it does and differs when it says it does
//! not, so the conventions `docs/ops.md` states per op are backed both ways.

use ndarray::{ArrayD, IxDyn};
use retrograd::ops::conv::PoolSpec;
use retrograd::ops::elementwise::where_;
use retrograd::ops::prelude::*;
use serde_json::Value;

/// Per case, the framework calls whose gradients (first list) and output tangents
/// (second list) retrograd agrees with; every other call in the fixture must differ.
const CLAIMS: &[(&str, &[&str], &[&str])] = &[
    (
        "relu",
        &["torch.relu", "jax.nn.relu"],
        &["torch.relu", "jax.nn.relu"],
    ),
    (
        "leaky_relu[0.1]",
        &["torch.nn.functional.leaky_relu"],
        &["torch.nn.functional.leaky_relu"],
    ),
    ("abs", &["torch.abs"], &["torch.abs"]),
    (
        "clamp[-1, 1]",
        &["torch.clamp (scalar bounds)", "jax.lax.clamp"],
        &["torch.clamp (scalar bounds)", "jax.lax.clamp"],
    ),
    (
        "clamp by tensors",
        &["torch.clamp (tensor bounds)", "jax.numpy.clip"],
        &["torch.clamp (tensor bounds)", "jax.numpy.clip"],
    ),
    (
        "sqrt",
        &["torch.sqrt", "jax.numpy.sqrt"],
        &["torch.sqrt", "jax.numpy.sqrt"],
    ),
    ("powf[0.0]", &["torch.pow"], &["torch.pow"]),
    (
        "powf[1.0]",
        &["torch.pow", "jax.numpy.power"],
        &["torch.pow", "jax.numpy.power"],
    ),
    (
        "powf[2.0]",
        &["torch.pow", "jax.numpy.power"],
        &["torch.pow", "jax.numpy.power"],
    ),
    (
        "powf[0.5]",
        &["torch.pow", "jax.numpy.power"],
        &["torch.pow", "jax.numpy.power"],
    ),
    (
        "powf[-0.5]",
        &["torch.pow", "jax.numpy.power"],
        &["torch.pow", "jax.numpy.power"],
    ),
    ("pow", &["torch.pow"], &["torch.pow"]),
    (
        "maximum",
        &["torch.maximum", "jax.numpy.maximum"],
        &["torch.maximum", "jax.numpy.maximum"],
    ),
    (
        "minimum",
        &["torch.minimum", "jax.numpy.minimum"],
        &["torch.minimum", "jax.numpy.minimum"],
    ),
    (
        "max(axis 1)",
        &["torch.amax", "jax.numpy.max"],
        &["torch.amax", "jax.numpy.max"],
    ),
    (
        "max(all)",
        &["torch.amax", "torch.max", "jax.numpy.max"],
        &["torch.amax", "torch.max", "jax.numpy.max"],
    ),
    (
        "min(axis 1)",
        &["torch.amin", "jax.numpy.min"],
        &["torch.amin", "jax.numpy.min"],
    ),
    (
        "max_pool2d(2)",
        &[
            "torch.nn.functional.max_pool2d",
            "jax.lax.reduce_window(max)",
        ],
        &[
            "torch.nn.functional.max_pool2d",
            "jax.lax.reduce_window(max)",
        ],
    ),
    (
        "max_pool2d(2, stride 1)",
        &[
            "torch.nn.functional.max_pool2d",
            "jax.lax.reduce_window(max)",
        ],
        &[
            "torch.nn.functional.max_pool2d",
            "jax.lax.reduce_window(max)",
        ],
    ),
    (
        "where",
        &["torch.where", "jax.numpy.where"],
        &["torch.where", "jax.numpy.where"],
    ),
];

/// The retrograd expression of a case: the function the framework calls compute.
fn apply<'t>(case: &str, x: &[Var<'t, f64>]) -> Var<'t, f64> {
    if let Some(p) = case
        .strip_prefix("powf[")
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return x[0].powf(p.parse().expect("an exponent"));
    }
    match case {
        "relu" => x[0].relu(),
        "leaky_relu[0.1]" => x[0].leaky_relu(0.1),
        "abs" => x[0].abs(),
        "clamp[-1, 1]" => x[0].clamp(-1.0, 1.0),
        // retrograd's clamp takes scalar bounds; with tensor bounds it is this composition.
        "clamp by tensors" => x[0].maximum(&x[1]).minimum(&x[2]),
        "sqrt" => x[0].sqrt(),
        "pow" => x[0].pow(&x[1]),
        "maximum" => x[0].maximum(&x[1]),
        "minimum" => x[0].minimum(&x[1]),
        "max(axis 1)" => x[0].max(1, false),
        "max(all)" => x[0].max_all(),
        "min(axis 1)" => x[0].min(1, false),
        "max_pool2d(2)" => x[0].max_pool2d(PoolSpec::new(2)),
        "max_pool2d(2, stride 1)" => x[0].max_pool2d(PoolSpec::new(2).stride(1)),
        "where" => where_(&x[0], &x[1], &x[2]),
        other => panic!("kinks.json has a case this test does not know: {other:?}"),
    }
}

/// An array of the fixture (`{"shape": [..], "data": [..]}`, non-finite numbers as
/// `"inf"`, `"-inf"`, `"nan"`).
fn array(v: &Value) -> ArrayD<f64> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("a shape")
        .iter()
        .map(|e| e.as_u64().expect("an extent") as usize)
        .collect();
    let data: Vec<f64> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| match e {
            Value::String(s) => match s.as_str() {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                other => panic!("not a number: {other:?}"),
            },
            n => n.as_f64().expect("a number"),
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("data fills the shape")
}

/// Equal up to 1e-12 relative (the frameworks' own last-bit rounding), with equal
/// infinities and NaN equal to NaN.
fn agree(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape()
        && a.iter().zip(b).all(|(&x, &y)| {
            x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        })
}

/// retrograd's gradients (VJP with `cotangent`) and output tangent (JVP with `tangents`).
fn retrograd_answer(
    case: &str,
    inputs: &[ArrayD<f64>],
    cotangent: &ArrayD<f64>,
    tangents: &[ArrayD<f64>],
) -> (Vec<ArrayD<f64>>, ArrayD<f64>) {
    let tape = Tape::<f64>::new();
    let xs: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let y = apply(case, &xs);
    let grads = tape.vjp(y, cotangent.clone(), &xs).expect("a VJP");
    // A fresh tape: the backward sweep above freed the graph it walked.
    let tape = Tape::<f64>::new();
    let xs: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let y = apply(case, &xs);
    let tangents = tangents.iter().map(|t| t.clone().into()).collect();
    let jvp = tape.jvp(&[y], &xs, tangents).expect("a JVP");
    (grads, jvp.into_iter().next().expect("one output"))
}

fn fixture() -> Value {
    let text = include_str!("../reference/kinks.json");
    serde_json::from_str(text).expect("kinks.json parses")
}

#[test]
fn kinks_and_ties_agree_with_the_frameworks_the_docs_name() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().expect("cases");
    let mut wrong = Vec::new();
    for entry in cases {
        let case = entry["case"].as_str().expect("a case name");
        let call = entry["call"].as_str().expect("a call");
        let (_, vjp_claim, jvp_claim) = CLAIMS
            .iter()
            .find(|(c, ..)| *c == case)
            .unwrap_or_else(|| panic!("no claim for {case:?}"));
        let list = |key: &str| -> Vec<ArrayD<f64>> {
            entry[key]
                .as_array()
                .expect(key)
                .iter()
                .map(array)
                .collect()
        };
        let (inputs, tangents) = (list("inputs"), list("tangents"));
        let (grads, jvp) = retrograd_answer(case, &inputs, &array(&entry["cotangent"]), &tangents);
        let theirs = list("grads");
        let same =
            grads.len() == theirs.len() && grads.iter().zip(&theirs).all(|(a, b)| agree(a, b));
        if same != vjp_claim.contains(&call) {
            wrong.push(format!(
                "{case} gradients vs {call}: claimed {}, retrograd {grads:?}, {call} {theirs:?}",
                if same { "to differ" } else { "to agree" }
            ));
        }
        if !entry["jvp"].is_null() {
            let theirs = array(&entry["jvp"]);
            let same = agree(&jvp, &theirs);
            if same != jvp_claim.contains(&call) {
                wrong.push(format!(
                    "{case} tangent vs {call}: claimed {}, retrograd {jvp}, {call} {theirs}",
                    if same { "to differ" } else { "to agree" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every claim has answers in the fixture to back it (a claim about a call the fixture
/// lacks would be checked by nothing).
#[test]
fn every_claim_is_backed_by_the_fixture() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().expect("cases");
    let has = |case: &str, call: &str, jvp: bool| {
        cases
            .iter()
            .any(|e| e["case"] == case && e["call"] == call && (!jvp || !e["jvp"].is_null()))
    };
    for (case, vjp, jvp) in CLAIMS {
        assert!(vjp.iter().all(|c| has(case, c, false)), "{case}: {vjp:?}");
        assert!(jvp.iter().all(|c| has(case, c, true)), "{case}: {jvp:?}");
    }
}
