//! Typed errors for runtime conditions a caller may want to handle.
//!
//! Programmer errors (shapes that do not fit an op, an axis out of range, a Var from
//! another tape) panic instead, with a message naming the op, the shapes and the caller's
//! line; their `try_` variants return these errors.

use std::fmt;
use std::panic::Location;

use crate::tensor::Shape;

/// A source location recorded through `#[track_caller]`.
pub type SourceLocation = &'static Location<'static>;

/// Why a gradient, JVP or tape query could not be answered.
///
/// `{:?}` prints the same text as `{}`: an error that reaches the end of `main` through `?`
/// is printed with `Debug`, and there the message is what helps. Match on the variants
/// (or read the fields) for the structured facts.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The inputs do not fit the op (shapes that do not broadcast, an axis out of range,
    /// a matmul of incompatible shapes): what a `try_` variant returns instead of panicking.
    InvalidOp {
        /// The op's name.
        op: &'static str,
        /// The shapes of its inputs.
        shapes: Vec<Shape>,
        /// What is wrong, in the op's words.
        message: String,
        /// The caller's line.
        location: SourceLocation,
    },
    /// `backward`/`grad` from an output with more than one element and no seed cotangent.
    NonScalarOutput {
        /// The output's shape.
        shape: Shape,
        /// Where the output was created.
        location: SourceLocation,
    },
    /// A seed cotangent or tangent whose shape differs from the value it belongs to.
    ShapeMismatch {
        /// What the value is ("seed cotangent", "tangent for input 0", ...).
        what: String,
        /// The value's shape.
        expected: Shape,
        /// The shape given.
        got: Shape,
    },
    /// A backward sweep reached a node whose rule an earlier sweep already freed.
    /// Pass `retain_graph` to the first sweep to differentiate the same graph twice.
    GraphFreed {
        /// The op whose rule is gone.
        op: &'static str,
        /// Where the op was recorded.
        location: SourceLocation,
    },
    /// A value was read after a backward sweep freed it at its last use
    /// ([`GradOptions::free_values`](crate::GradOptions::free_values)). Read it before the
    /// sweep, or sweep without `free_values`.
    ValueFreed {
        /// The op that computed the value.
        op: &'static str,
        /// The node's position (its id in dumps: `%3`).
        node: usize,
        /// Where the op was recorded.
        location: SourceLocation,
    },
    /// A gradient was asked for a value that cannot have one, with the reason.
    NotDifferentiable {
        /// Position of the value in the caller's list of inputs.
        input: usize,
        /// Where the value was created.
        location: SourceLocation,
        /// Why it has no gradient.
        reason: &'static str,
    },
    /// Strict mode: the output does not depend on this input, so its gradient is zero.
    NotOnPath {
        /// Position of the value in the caller's list of inputs.
        input: usize,
        /// Where the value was created.
        location: SourceLocation,
    },
    /// A single element was asked for ([`Tensor::item`](crate::Tensor::item),
    /// [`Var::item`](crate::Var::item) and their `try_` forms) of a value that has none or
    /// several.
    NotOneElement {
        /// The value's shape.
        shape: Shape,
        /// Its number of elements.
        len: usize,
        /// Where the value was created, for a Var.
        location: Option<SourceLocation>,
    },
    /// A Var of another tape was passed to this tape's sweep.
    ForeignVar {
        /// The operation that received it.
        op: &'static str,
        /// Where the foreign Var was created.
        location: SourceLocation,
    },
    /// Anomaly mode (or [`Gradients::check_finite`](crate::Gradients::check_finite)) found
    /// a NaN or an infinity.
    NonFinite {
        /// What held it: `"forward value"`, `"cotangent"` (returned by a VJP rule),
        /// `"seed cotangent"`, `"hooked cotangent"` (returned by a gradient hook),
        /// `"cotangent sum"` (finite contributions whose sum overflowed) or `"gradient"`
        /// (found by `Gradients::check_finite`).
        what: &'static str,
        /// The op that made the value: for a forward value the op of the node itself, for a
        /// cotangent the op whose VJP rule produced it (`"hook"` for a hook's replacement,
        /// `"add"` for an overflowing sum), for a gradient the leaf (`"var"`).
        op: &'static str,
        /// The id (position in evaluation order, as tape dumps print it) of the node of `op`.
        node: usize,
        /// Where that op was recorded in the user's code.
        location: SourceLocation,
        /// For a cotangent: the id, op and location of the node it flows into.
        into: Option<(usize, &'static str, SourceLocation)>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidOp {
                op,
                shapes,
                message,
                location,
            } => {
                write!(f, "`{op}` at {location}: {message} (input shapes ")?;
                for (i, s) in shapes.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{:?}", s.as_slice())?;
                }
                write!(f, ")")
            }
            Error::NonScalarOutput { shape, location } => write!(
                f,
                "backward from an output of shape {shape:?} (created at {location}) needs a seed \
                 cotangent of that shape; use `vjp` or `GradOptions::seed`, or reduce the output \
                 to a scalar first"
            ),
            Error::ShapeMismatch {
                what,
                expected,
                got,
            } => {
                write!(f, "{what} has shape {got:?}, expected {expected:?}")
            }
            Error::GraphFreed { op, location } => write!(
                f,
                "the graph through `{op}` (recorded at {location}) was freed by an earlier \
                 backward sweep; make the first sweep keep it with `GradOptions::new().retain_graph()` \
                 (`backward_with`, `grad_with`) to differentiate it twice"
            ),
            Error::ValueFreed { op, node, location } => write!(
                f,
                "the value of `{op}` (node %{node}, recorded at {location}) was freed at its last \
                 use by a backward sweep with `GradOptions::free_values`; read it before the \
                 sweep, or sweep without `free_values`"
            ),
            Error::NotDifferentiable {
                input,
                location,
                reason,
            } => {
                write!(
                    f,
                    "input {input} (created at {location}) has no gradient: {reason}"
                )
            }
            Error::NotOnPath { input, location } => write!(
                f,
                "the output does not depend on input {input} (created at {location}); its \
                 gradient is zero"
            ),
            Error::NotOneElement {
                shape,
                len,
                location,
            } => {
                write!(f, "item: the value of shape {shape:?}")?;
                if let Some(location) = location {
                    write!(f, " (created at {location})")?;
                }
                write!(
                    f,
                    " has {len} elements, not one; read them all with `to_array()` or `view()`, \
                     or reduce it to one element first (`sum_all()`, `mean_all()`, `at(&[..])`)"
                )
            }
            Error::ForeignVar { op, location } => write!(
                f,
                "`{op}` was given a Var of another tape (created at {location})"
            ),
            Error::NonFinite {
                what,
                op,
                node,
                location,
                into,
            } => {
                write!(
                    f,
                    "non-finite {what} (NaN or infinity) produced by `{op}` (node %{node}) \
                     recorded at {location}"
                )?;
                if let Some((into_node, into_op, into_loc)) = into {
                    write!(
                        f,
                        ", flowing into `{into_op}` (node %{into_node}) recorded at {into_loc}"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

/// The result type of fallible tape operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use crate::Tape;

    /// `fn main() -> Result<(), Error>` prints `Error: {err:?}`: that must be the message.
    #[test]
    fn debug_prints_the_message_a_user_can_act_on() {
        let tape = Tape::<f64>::new();
        let x = tape.var(ndarray::array![1.0, 2.0, 3.0]);
        let y = x * x;
        let err = y.backward().unwrap_err();
        let shown = format!("{err:?}");
        assert_eq!(shown, err.to_string());
        assert!(
            shown.starts_with("backward from an output of shape [3] (created at ")
                && shown.contains("reduce the output to a scalar first"),
            "{shown}"
        );
    }

    #[test]
    fn a_freed_graph_names_the_option_that_keeps_it() {
        let tape = Tape::<f64>::new();
        let x = tape.var(2.0);
        let y = x * x * x;
        y.backward().unwrap();
        let shown = format!("{:?}", y.backward().unwrap_err());
        assert!(
            shown.contains("GradOptions::new().retain_graph()"),
            "{shown}"
        );
    }
}
