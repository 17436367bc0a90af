"""Derivatives of retrograd's ops at their kinks and ties, as PyTorch and JAX compute them.

Writes tests/reference/kinks.json, which tests/tests/kinks.rs reads: for every case (an
op, a point on or next to its kinks or ties, a cotangent and input tangents) and every
framework call that implements the op, the gradients (the VJP with the case's cotangent)
and, where the framework has forward mode for it, the output tangent (the JVP with the
case's tangents). Everything in float64. Non-finite numbers are written as the strings
"inf", "-inf" and "nan" (JSON has no literal for them).

Rerun (from the repository root; CI does not, it reads only the committed fixture):

    python3 -m venv /tmp/kinks-venv
    /tmp/kinks-venv/bin/pip install torch "jax[cpu]"
    /tmp/kinks-venv/bin/python tests/reference/kinks.py

(PyTorch's CPU-only wheel index, `--index-url https://download.pytorch.org/whl/cpu`, is
lighter where it can be reached; plain PyPI's torch pulls in about 3 GB of CUDA runtime
wheels, which it needs even to import on a CPU.) The committed fixture was produced with
torch 2.15.0 (PyPI's build, `2.15.0+cu132`, run on the CPU) and jax/jaxlib 0.10.2 (the script
records the versions it ran with in the fixture's "versions").

Case names are retrograd's: tests/tests/kinks.rs maps each to the retrograd expression
that computes the same function, and lists which framework calls retrograd agrees with.
"""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

jax.config.update("jax_enable_x64", True)
torch.set_default_dtype(torch.float64)


def cotangent_for(shape):
    """A cotangent whose entries differ (1, 2, 3, ...), so a split or a pick shows."""
    n = int(np.prod(shape, dtype=np.int64))
    return np.arange(1.0, n + 1.0).reshape(shape)


def tangent_for(shape, i):
    """Input `i`'s tangent: distinct entries (1, 2, 4, ... for input 0; 3, 6, ... after)."""
    n = int(np.prod(shape, dtype=np.int64))
    return (np.exp2(np.arange(n) % 8) * (1 + 2 * i)).reshape(shape)


def torch_answer(fn, inputs, cot, tangents):
    """Gradients by backward, the output tangent by torch.func.jvp (None if unsupported)."""
    xs = [torch.tensor(x, requires_grad=True) for x in inputs]
    y = fn(*xs)
    grads = torch.autograd.grad(y, xs, torch.tensor(cot), allow_unused=True)
    grads = [np.zeros_like(x) if g is None else g.detach().numpy() for g, x in zip(grads, inputs)]
    try:
        _, t = torch.func.jvp(
            fn, tuple(torch.tensor(x) for x in inputs), tuple(torch.tensor(t) for t in tangents)
        )
        t = t.detach().numpy()
    except (RuntimeError, NotImplementedError):
        t = None
    return grads, t


def jax_answer(fn, inputs, cot, tangents):
    xs = [jnp.asarray(x) for x in inputs]
    _, pullback = jax.vjp(fn, *xs)
    grads = [np.asarray(g) for g in pullback(jnp.asarray(cot))]
    _, t = jax.jvp(fn, tuple(xs), tuple(jnp.asarray(t) for t in tangents))
    return grads, np.asarray(t)


def encode(a):
    a = np.asarray(a, dtype=np.float64)

    def number(v):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return float(v)

    return {"shape": list(a.shape), "data": [number(v) for v in a.reshape(-1)]}


def arr(values):
    return np.asarray(values, dtype=np.float64)


# Points: kinks and ties, with a point on each side.
ON_ZERO = arr([-1.0, 0.0, 1.0])
AROUND_BOUNDS = arr([-2.0, -1.0, 0.0, 1.0, 2.0])
TIES_2D = arr([[2.0, 7.0, 7.0], [3.0, 3.0, 3.0]])
# Every 2x2 window of this 4x4 image has a tie for its maximum, in various positions; the
# overlapping 2x2/stride-1 windows share tied entries.
POOL = arr([[5, 5, 1, 2], [0, 3, 2, 2], [4, 1, 6, 0], [0, 4, 6, 6]]).reshape(1, 1, 4, 4)


def pool_t(kernel, stride):
    return lambda x: F.max_pool2d(x, kernel, stride)


def pool_j(kernel, stride):
    dims, strides = (1, 1, kernel, kernel), (1, 1, stride, stride)
    return lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, "VALID")


def tensor_clamp_t(x, lo, hi):
    return torch.clamp(x, lo, hi)


# (case, inputs, [(framework call, "torch" | "jax", function)])
CASES = [
    ("relu", [ON_ZERO], [("torch.relu", "torch", torch.relu), ("jax.nn.relu", "jax", jax.nn.relu)]),
    (
        "leaky_relu[0.1]",
        [ON_ZERO],
        [
            ("torch.nn.functional.leaky_relu", "torch", lambda x: F.leaky_relu(x, 0.1)),
            ("jax.nn.leaky_relu", "jax", lambda x: jax.nn.leaky_relu(x, 0.1)),
        ],
    ),
    ("abs", [ON_ZERO], [("torch.abs", "torch", torch.abs), ("jax.numpy.abs", "jax", jnp.abs)]),
    (
        "clamp[-1, 1]",
        [AROUND_BOUNDS],
        [
            ("torch.clamp (scalar bounds)", "torch", lambda x: torch.clamp(x, -1.0, 1.0)),
            ("jax.numpy.clip", "jax", lambda x: jnp.clip(x, -1.0, 1.0)),
            ("jax.lax.clamp", "jax", lambda x: jax.lax.clamp(-1.0, x, 1.0)),
        ],
    ),
    (
        "clamp by tensors",
        [AROUND_BOUNDS, arr([-1.0] * 5), arr([1.0] * 5)],
        [
            ("torch.clamp (tensor bounds)", "torch", tensor_clamp_t),
            ("jax.numpy.clip", "jax", lambda x, lo, hi: jnp.clip(x, lo, hi)),
            ("jax.lax.clamp", "jax", lambda x, lo, hi: jax.lax.clamp(lo, x, hi)),
        ],
    ),
    ("sqrt", [arr([0.0, 1.0, 4.0])], [("torch.sqrt", "torch", torch.sqrt), ("jax.numpy.sqrt", "jax", jnp.sqrt)]),
]

for p in [0.0, 1.0, 2.0, 0.5, -0.5]:
    CASES.append(
        (
            f"powf[{p}]",
            [arr([0.0, 2.0])],
            [
                ("torch.pow", "torch", lambda x, p=p: torch.pow(x, p)),
                ("jax.numpy.power", "jax", lambda x, p=p: jnp.power(x, p)),
            ],
        )
    )

CASES += [
    (
        "pow",
        # base 0 with exponents 0, 2, 0.5, -1; base 2 with exponent 0; a negative base with
        # an integer exponent.
        [arr([0.0, 0.0, 0.0, 0.0, 2.0, -2.0]), arr([0.0, 2.0, 0.5, -1.0, 0.0, 2.0])],
        [("torch.pow", "torch", torch.pow), ("jax.numpy.power", "jax", jnp.power)],
    ),
    (
        "maximum",
        [arr([1.0, 2.0, 3.0]), arr([1.0, 5.0, 0.0])],
        [("torch.maximum", "torch", torch.maximum), ("jax.numpy.maximum", "jax", jnp.maximum)],
    ),
    (
        "minimum",
        [arr([1.0, 2.0, 3.0]), arr([1.0, 5.0, 0.0])],
        [("torch.minimum", "torch", torch.minimum), ("jax.numpy.minimum", "jax", jnp.minimum)],
    ),
    (
        "max(axis 1)",
        [TIES_2D],
        [
            ("torch.amax", "torch", lambda x: torch.amax(x, 1)),
            ("torch.max(dim)", "torch", lambda x: torch.max(x, 1).values),
            ("jax.numpy.max", "jax", lambda x: jnp.max(x, 1)),
        ],
    ),
    (
        "max(all)",
        [TIES_2D],
        [
            ("torch.amax", "torch", lambda x: torch.amax(x)),
            ("torch.max", "torch", lambda x: torch.max(x)),
            ("jax.numpy.max", "jax", lambda x: jnp.max(x)),
        ],
    ),
    (
        "min(axis 1)",
        [-TIES_2D],
        [
            ("torch.amin", "torch", lambda x: torch.amin(x, 1)),
            ("torch.min(dim)", "torch", lambda x: torch.min(x, 1).values),
            ("jax.numpy.min", "jax", lambda x: jnp.min(x, 1)),
        ],
    ),
    (
        "max_pool2d(2)",
        [POOL],
        [
            ("torch.nn.functional.max_pool2d", "torch", pool_t(2, 2)),
            ("jax.lax.reduce_window(max)", "jax", pool_j(2, 2)),
        ],
    ),
    (
        "max_pool2d(2, stride 1)",
        [POOL],
        [
            ("torch.nn.functional.max_pool2d", "torch", pool_t(2, 1)),
            ("jax.lax.reduce_window(max)", "jax", pool_j(2, 1)),
        ],
    ),
    (
        "where",
        # The condition is an input too (its gradient is zero everywhere): 0 and -0 select
        # b, any other value (NaN included) selects a.
        [arr([0.0, 1.0, -0.0, 2.0, math.nan]), arr([1.0, 2.0, 3.0, 4.0, 5.0]), arr([6.0, 7.0, 8.0, 9.0, 10.0])],
        [
            ("torch.where", "torch", lambda c, a, b: torch.where(c != 0, a, b)),
            ("jax.numpy.where", "jax", jnp.where),
        ],
    ),
]


def main():
    cases = []
    for name, inputs, calls in CASES:
        cot = None
        tangents = [tangent_for(x.shape, i) for i, x in enumerate(inputs)]
        for call, framework, fn in calls:
            answer = torch_answer if framework == "torch" else jax_answer
            if cot is None:
                out = fn(*[torch.tensor(x) for x in inputs]) if framework == "torch" else fn(*inputs)
                shape = tuple(np.asarray(out.detach() if framework == "torch" else out).shape)
                cot = cotangent_for(shape)
            grads, t = answer(fn, inputs, cot, tangents)
            cases.append(
                {
                    "case": name,
                    "call": call,
                    "inputs": [encode(x) for x in inputs],
                    "cotangent": encode(cot),
                    "tangents": [encode(t) for t in tangents],
                    "grads": [encode(g) for g in grads],
                    "jvp": None if t is None else encode(t),
                }
            )
    fixture = {
        "generated_by": "tests/reference/kinks.py",
        "versions": {"torch": torch.__version__, "jax": jax.__version__, "jaxlib": jax.lib.__version__},
        "cases": cases,
    }
    out = pathlib.Path(__file__).with_name("kinks.json")
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {len(cases)} answers to {out}")


if __name__ == "__main__":
    main()
