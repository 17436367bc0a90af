//! Handles to values: `Var` for user code, `Val` for rules, and `Operand` over both.

use std::fmt;
use std::panic::Location;

use ndarray::ArrayD;
use smallvec::SmallVec;

use crate::Float;
use crate::error::{Error, Result, SourceLocation};
use crate::rule::Rule;
use crate::tape::{NodeKey, Tape};
use crate::tensor::{Shape, Tensor};

/// A handle to a value recorded on a [`Tape`]: the tape reference plus a key.
///
/// `Var` is `Copy` (write `x * x`, no clones) and borrows its tape, so the compiler rejects
/// a Var that outlives its tape:
///
/// ```compile_fail
/// use retrograd_tape::{Tape, Var};
/// let x: Var<f64>;
/// {
///     let tape = Tape::<f64>::new();
///     x = tape.var(1.0);
/// } // `tape` dropped here while still borrowed
/// println!("{}", x.item());
/// ```
pub struct Var<'t, T: Float> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) key: NodeKey,
}

impl<T: Float> Clone for Var<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Float> Copy for Var<'_, T> {}

impl<'t, T: Float> Var<'t, T> {
    /// The tape this Var lives on.
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The node's key on its tape.
    pub fn key(&self) -> NodeKey {
        self.key
    }

    /// The value, as the [`Tensor`] every value is read as (an `Arc` clone for arrays: no
    /// copy of the data). [`array`](Var::array) is the shortcut to an ndarray copy.
    ///
    /// ```
    /// use retrograd_tape::{Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var([1.0, 2.0]);
    /// let v: Tensor<f64> = (x * 2.0).value();
    /// assert_eq!(v, ndarray::array![2.0, 4.0]);
    /// assert_eq!(v.iter().sum::<f64>(), 6.0);
    /// ```
    ///
    /// # Panics
    /// When a backward sweep freed it (see [`try_value`](Var::try_value)).
    #[track_caller]
    pub fn value(&self) -> Tensor<T> {
        self.read(Tensor::clone)
    }

    /// The value, or [`Error::ValueFreed`] when a backward sweep asked to free values at
    /// their last use ([`GradOptions::free_values`](crate::GradOptions::free_values)) freed
    /// it. Such a sweep frees the array values of the ops it went through once nothing
    /// reads them any more; leaves, constants, scalars and the sweep's output stay.
    ///
    /// ```
    /// use retrograd_tape::{GradOptions, Tape, arith::sum_to};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(ndarray::array![1.0, 2.0]);
    /// let h = x * x;
    /// let loss = sum_to(&h, &[]);
    /// loss.backward_with(&GradOptions::new().free_values())?;
    /// assert!(h.try_value().is_err());
    /// assert_eq!(loss.item(), 5.0);
    /// assert_eq!(x.try_value()?.len(), 2);
    /// # Ok::<(), retrograd_tape::Error>(())
    /// ```
    pub fn try_value(&self) -> Result<Tensor<T>> {
        let inner = self.tape.inner.borrow();
        inner.graph.value(self.key).cloned()
    }

    /// `f` of the value, panicking with [`Error::ValueFreed`]'s message when it was freed.
    #[track_caller]
    fn read<R>(&self, f: impl FnOnce(&Tensor<T>) -> R) -> R {
        let inner = self.tape.inner.borrow();
        match inner.graph.value(self.key) {
            Ok(v) => f(v),
            Err(e) => panic!("{e}"),
        }
    }

    /// The value as an owned ndarray array (a copy): `self.value().to_array()`, for
    /// handing the value to ndarray code.
    ///
    /// # Panics
    /// When the value was freed (as [`value`](Var::value)).
    #[track_caller]
    pub fn array(&self) -> ArrayD<T> {
        self.read(Tensor::to_array)
    }

    /// The single element of a value that has exactly one, of any shape (a loss, a norm,
    /// one entry picked with `at`), as [`Tensor::item`].
    ///
    /// ```
    /// use retrograd_tape::Tape;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(3.0);
    /// assert_eq!((x * x).item(), 9.0);
    /// ```
    ///
    /// # Panics
    /// When the value has no element or several, naming its shape, its element count and
    /// where it was made; when it was freed (as [`value`](Var::value)). The non-panicking
    /// form is [`try_item`](Var::try_item).
    #[track_caller]
    pub fn item(&self) -> T {
        // The panic is raised here, in the caller-tracked body, so that it names the
        // caller's line even when `item` is called from inside a closure.
        match self.try_item() {
            Ok(x) => x,
            Err(e) => panic_with(e),
        }
    }

    /// [`item`](Var::item) without panicking: [`Error::NotOneElement`] (naming where the
    /// value was made) when it has no element or several, [`Error::ValueFreed`] when a
    /// backward sweep freed it.
    ///
    /// ```
    /// use retrograd_tape::{Error, Tape};
    /// let tape = Tape::<f64>::new();
    /// let v = tape.var([1.0, 2.0]);
    /// let err = v.try_item().unwrap_err();
    /// assert!(matches!(err, Error::NotOneElement { len: 2, location: Some(_), .. }));
    /// assert!(err.to_string().contains("sum_all()"));
    /// ```
    pub fn try_item(&self) -> Result<T> {
        let inner = self.tape.inner.borrow();
        match inner.graph.value(self.key)?.try_item() {
            Err(Error::NotOneElement { shape, len, .. }) => Err(Error::NotOneElement {
                shape,
                len,
                location: Some(inner.graph.node(self.key).location),
            }),
            result => result,
        }
    }

    /// The value's shape (known also once the value was freed).
    pub fn shape(&self) -> Shape {
        Shape::from_slice(self.tape.inner.borrow().graph.shape(self.key))
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.tape.inner.borrow().graph.shape(self.key).len()
    }

    /// Whether gradients flow to this value: a leaf made by [`Tape::var`], or the result
    /// of an op with such an input recorded outside a no-grad scope.
    pub fn requires_grad(&self) -> bool {
        self.tape.with_node(self.key, |n| n.origin.requires_grad())
    }

    /// The user's source line that created this value.
    pub fn location(&self) -> SourceLocation {
        self.tape.with_node(self.key, |n| n.location)
    }

    /// A constant with the same value (shared, not copied): gradients stop here.
    #[track_caller]
    pub fn detach(self) -> Var<'t, T> {
        let value = self.value();
        let key = self.tape.push_constant(value, "detach", Location::caller());
        Var {
            tape: self.tape,
            key,
        }
    }

    /// Applies a primitive to Vars of one tape and records it.
    ///
    /// # Panics
    /// When the inputs do not fit the op (the message names the op, the shapes and the
    /// caller's line), or when the Vars belong to different tapes.
    #[track_caller]
    pub fn apply<R: Rule<T>>(rule: R, inputs: &[&Var<'t, T>]) -> Var<'t, T> {
        <Self as Operand<'t, T>>::apply(rule, inputs)
    }

    /// Like [`Var::apply`], but returns [`Error::InvalidOp`] or [`Error::ForeignVar`]
    /// instead of panicking.
    #[track_caller]
    pub fn try_apply<R: Rule<T>>(rule: R, inputs: &[&Var<'t, T>]) -> Result<Var<'t, T>> {
        <Self as Operand<'t, T>>::try_apply(rule, inputs)
    }
}

/// `Var(%3 "layer1.weight" mul [2, 3] f64 grad at src/main.rs:12:9)`: the node id, its
/// name if it has one, the op, shape, element type, whether gradients flow through it, and
/// the line that made it.
impl<T: Float> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.tape.inner.borrow();
        let n = inner.graph.node(self.key);
        write!(f, "Var(%{} ", self.key.pos())?;
        if let Some(label) = inner.inspect.labels.get(self.key) {
            write!(f, "{label:?} ")?;
        }
        write!(
            f,
            "{} {:?} {}{} at {})",
            inner.graph.name(&n.origin),
            inner.graph.shape(self.key),
            T::NAME,
            if n.origin.requires_grad() {
                " grad"
            } else {
                ""
            },
            n.location
        )
    }
}

impl<T: Float> fmt::Display for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tape.inner.borrow().graph.value(self.key) {
            Ok(v) => fmt::Display::fmt(v, f),
            Err(_) => write!(f, "<freed>"),
        }
    }
}

/// A value as a rule sees it: a plain tensor, or a node of the tape.
///
/// In a plain sweep everything is `Const` and each op on it computes at once, recording
/// nothing; when the sweep records itself (`create_graph`), inputs, outputs and cotangents
/// are `Var`s and each op records a node. Ops mixing the two record, entering the constant
/// as a constant node. Rules are written once against this type.
#[derive(Clone)]
pub enum Val<'t, T: Float> {
    /// A value known at this point, not recorded.
    Const(Tensor<T>),
    /// A node of a tape.
    Var(Var<'t, T>),
}

impl<'t, T: Float> Val<'t, T> {
    /// The value (an `Arc` clone for arrays).
    pub fn value(&self) -> Tensor<T> {
        match self {
            Val::Const(t) => t.clone(),
            Val::Var(v) => v.value(),
        }
    }

    /// The value, moved out of a constant (so that [`Tensor::into_array`] finds its buffer
    /// unshared and needs no copy); an `Arc` clone of a recorded node's value.
    pub fn into_value(self) -> Tensor<T> {
        match self {
            Val::Const(t) => t,
            Val::Var(v) => v.value(),
        }
    }

    /// The value's shape.
    pub fn shape(&self) -> Shape {
        match self {
            Val::Const(t) => Shape::from_slice(t.shape()),
            Val::Var(v) => v.shape(),
        }
    }

    /// The Var, if this value is recorded.
    pub fn as_var(&self) -> Option<Var<'t, T>> {
        match self {
            Val::Var(v) => Some(*v),
            Val::Const(_) => None,
        }
    }

    /// This value as a Var of `tape`: a recorded value as it is, a constant entered as a
    /// constant node.
    ///
    /// # Panics
    /// When the value is a Var of another tape.
    #[track_caller]
    pub fn into_var(self, tape: &'t Tape<T>) -> Var<'t, T> {
        match self {
            Val::Var(v) => {
                assert!(
                    std::ptr::eq(v.tape, tape),
                    "into_var: the value (created at {}) belongs to another tape",
                    v.location()
                );
                v
            }
            Val::Const(t) => Var {
                tape,
                key: tape.push_constant(t, "constant", Location::caller()),
            },
        }
    }
}

impl<T: Float> From<Tensor<T>> for Val<'_, T> {
    fn from(t: Tensor<T>) -> Self {
        Val::Const(t)
    }
}

impl<'t, T: Float> From<Var<'t, T>> for Val<'t, T> {
    fn from(v: Var<'t, T>) -> Self {
        Val::Var(v)
    }
}

impl<T: Float> fmt::Debug for Val<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Const(t) => write!(f, "Const({t:?})"),
            Val::Var(v) => write!(f, "{v:?}"),
        }
    }
}

/// [`Operand::apply`] for Vars beyond the hot path (other arities, Vars of two tapes).
#[cold]
#[inline(never)]
#[track_caller]
fn apply_slow<'t, T: Float, R: Rule<T>>(rule: R, inputs: &[&Var<'t, T>]) -> Var<'t, T> {
    match <Var<'t, T> as Operand<'t, T>>::try_apply(rule, inputs) {
        Ok(v) => v,
        Err(e) => panic_with(e),
    }
}

/// Panics with an error's message (out of line: never on the hot path).
#[cold]
#[inline(never)]
#[track_caller]
fn panic_with(e: Error) -> ! {
    panic!("{e}")
}

/// What a primitive can be applied to: a user's [`Var`] or a rule's [`Val`].
///
/// Ops are written once as generic functions over `Operand`, so the same `x.exp()` is a
/// recorded op in user code and a plain (or recorded, under `create_graph`) computation
/// inside a rule.
pub trait Operand<'t, T: Float>: Clone + Sized {
    /// Applies a primitive and returns its result.
    ///
    /// # Panics
    /// When the inputs do not fit the op, naming the op, the shapes and the caller's line.
    #[track_caller]
    fn apply<R: Rule<T>>(rule: R, inputs: &[&Self]) -> Self {
        match Self::try_apply(rule, inputs) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// Applies a primitive, returning [`Error::InvalidOp`] when the inputs do not fit it.
    #[track_caller]
    fn try_apply<R: Rule<T>>(rule: R, inputs: &[&Self]) -> Result<Self>;

    /// The value's shape.
    fn shape(&self) -> Shape;

    /// Whether the value has this shape (without building a [`Shape`]).
    fn has_shape(&self, shape: &[usize]) -> bool {
        crate::tensor::shape_eq(&self.shape(), shape)
    }

    /// The current value (an `Arc` clone for arrays).
    fn value(&self) -> Tensor<T>;

    /// A constant beside `self`: on the same tape for a Var, a plain constant for a Val.
    #[track_caller]
    fn constant_like(&self, value: Tensor<T>) -> Self;
}

impl<'t, T: Float> Operand<'t, T> for Var<'t, T> {
    /// The recording hot path: the common arities record straight from the stack, and a
    /// rejected input panics out of line, so the successful path carries no large
    /// `Result`.
    #[track_caller]
    #[inline]
    fn apply<R: Rule<T>>(rule: R, inputs: &[&Self]) -> Self {
        let location = Location::caller();
        let recorded = match inputs {
            [a] => a.tape.record(rule, &[a.key], location).map(|k| (a.tape, k)),
            [a, b] if std::ptr::eq(a.tape, b.tape) => a
                .tape
                .record(rule, &[a.key, b.key], location)
                .map(|k| (a.tape, k)),
            _ => return apply_slow(rule, inputs),
        };
        match recorded {
            Ok((tape, key)) => Var { tape, key },
            Err(e) => panic_with(*e),
        }
    }

    #[track_caller]
    fn try_apply<R: Rule<T>>(rule: R, inputs: &[&Self]) -> Result<Self> {
        let location = Location::caller();
        let Some(first) = inputs.first() else {
            let message = "an op needs at least one input".to_string();
            return Err(Error::InvalidOp {
                op: rule.name(),
                shapes: vec![],
                message,
                location,
            });
        };
        let tape = first.tape;
        for v in inputs {
            if !std::ptr::eq(v.tape, tape) {
                return Err(Error::ForeignVar {
                    op: rule.name(),
                    location: v.location(),
                });
            }
        }
        // The common arities build their key list on the stack.
        let key = match inputs {
            [a] => tape.record(rule, &[a.key], location),
            [a, b] => tape.record(rule, &[a.key, b.key], location),
            _ => {
                let keys: SmallVec<[NodeKey; 4]> = inputs.iter().map(|v| v.key).collect();
                tape.record(rule, &keys, location)
            }
        }
        .map_err(|e| *e)?;
        Ok(Var { tape, key })
    }

    fn shape(&self) -> Shape {
        Var::shape(self)
    }

    fn has_shape(&self, shape: &[usize]) -> bool {
        self.tape.with_node(self.key, |n| {
            crate::tensor::shape_eq(n.value.shape(), shape)
        })
    }

    fn value(&self) -> Tensor<T> {
        Var::value(self)
    }

    #[track_caller]
    fn constant_like(&self, value: Tensor<T>) -> Self {
        self.tape.constant(value)
    }
}

impl<'t, T: Float> Operand<'t, T> for Val<'t, T> {
    /// The plain sweep's hot path: constant inputs of the common arities go straight to
    /// the rule's forward computation, without the list and `Result` plumbing of
    /// [`try_apply`](Operand::try_apply).
    #[track_caller]
    #[inline]
    fn apply<R: Rule<T>>(mut rule: R, inputs: &[&Self]) -> Self {
        let out = match inputs {
            [Val::Const(a)] => rule.forward(&[a]),
            [Val::Const(a), Val::Const(b)] => rule.forward(&[a, b]),
            _ => {
                return match Self::try_apply(rule, inputs) {
                    Ok(v) => v,
                    Err(e) => panic!("{e}"),
                };
            }
        };
        match out {
            Ok(t) => Val::Const(t),
            Err(message) => panic!(
                "{}",
                Error::InvalidOp {
                    op: rule.name(),
                    shapes: inputs.iter().map(|v| v.shape()).collect(),
                    message,
                    location: Location::caller(),
                }
            ),
        }
    }

    #[track_caller]
    fn try_apply<R: Rule<T>>(mut rule: R, inputs: &[&Self]) -> Result<Self> {
        let location = Location::caller();
        // All constant: compute now, record nothing. This is the plain sweep's path, so the
        // common arities skip every allocation and list.
        let result = match inputs {
            [Val::Const(a)] => Some(rule.forward(&[a])),
            [Val::Const(a), Val::Const(b)] => Some(rule.forward(&[a, b])),
            _ => None,
        };
        match result {
            Some(Ok(t)) => return Ok(Val::Const(t)),
            Some(Err(message)) => {
                let shapes = inputs.iter().map(|v| v.shape()).collect();
                return Err(Error::InvalidOp {
                    op: rule.name(),
                    shapes,
                    message,
                    location,
                });
            }
            None => {}
        }
        let tape = inputs.iter().find_map(|v| v.as_var().map(|v| v.tape));
        match tape {
            None => {
                let tensors: SmallVec<[&Tensor<T>; 4]> = inputs
                    .iter()
                    .map(|v| match v {
                        Val::Const(t) => t,
                        Val::Var(_) => unreachable!("no input is a Var"),
                    })
                    .collect();
                match rule.forward(&tensors) {
                    Ok(t) => Ok(Val::Const(t)),
                    Err(message) => {
                        let shapes = tensors
                            .iter()
                            .map(|t| Shape::from_slice(t.shape()))
                            .collect();
                        Err(Error::InvalidOp {
                            op: rule.name(),
                            shapes,
                            message,
                            location,
                        })
                    }
                }
            }
            Some(tape) => {
                let mut keys: SmallVec<[NodeKey; 4]> = SmallVec::with_capacity(inputs.len());
                for v in inputs {
                    keys.push(match v {
                        Val::Var(x) if std::ptr::eq(x.tape, tape) => x.key,
                        Val::Var(x) => {
                            return Err(Error::ForeignVar {
                                op: rule.name(),
                                location: x.location(),
                            });
                        }
                        Val::Const(t) => tape.push_constant(t.clone(), "constant", location),
                    });
                }
                let key = tape.record(rule, &keys, location).map_err(|e| *e)?;
                Ok(Val::Var(Var { tape, key }))
            }
        }
    }

    fn shape(&self) -> Shape {
        Val::shape(self)
    }

    fn has_shape(&self, shape: &[usize]) -> bool {
        match self {
            Val::Const(t) => crate::tensor::shape_eq(t.shape(), shape),
            Val::Var(v) => v.has_shape(shape),
        }
    }

    fn value(&self) -> Tensor<T> {
        Val::value(self)
    }

    #[track_caller]
    fn constant_like(&self, value: Tensor<T>) -> Self {
        Val::Const(value)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, GradOptions, Tape, arith::sum_to};

    #[test]
    fn item_and_try_item_read_one_element_of_any_shape() {
        let tape = Tape::<f64>::new();
        for shape in [&[][..], &[1], &[1, 1]] {
            let v = tape.var(crate::Tensor::full(shape, -1.5));
            assert_eq!((v.item(), v.try_item()), (-1.5, Ok(-1.5)), "{shape:?}");
        }
    }

    #[test]
    fn item_of_no_element_or_several_names_the_shape_count_and_line() {
        let tape = Tape::<f64>::new();
        let empty = tape.var(crate::Tensor::zeros(&[2, 0]));
        let empty_line = line!() - 1;
        let many = tape.var([1.0, 2.0, 3.0]);
        let many_line = line!() - 1;
        for (v, line, shape, len) in [
            (empty, empty_line, "[2, 0]", 0),
            (many, many_line, "[3]", 3),
        ] {
            let err = v.try_item().unwrap_err();
            assert!(
                matches!(&err, Error::NotOneElement { len: n, location: Some(at), .. }
                    if *n == len && at.line() == line),
                "{err}"
            );
            let created = format!("created at {}:{line}:", file!());
            let expected = format!("item: the value of shape {shape} ({created}");
            let shown =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.item())).unwrap_err();
            let shown = shown.downcast_ref::<String>().unwrap();
            assert!(shown.starts_with(&expected), "{shown}");
            assert!(
                shown.contains(&format!("has {len} elements, not one")),
                "{shown}"
            );
            assert_eq!(*shown, err.to_string());
        }
    }

    #[test]
    fn try_item_of_a_freed_value_is_value_freed() {
        let tape = Tape::<f64>::new();
        let x = tape.var([1.0, 2.0]);
        let h = sum_to(&(x * x), &[1]);
        let loss = sum_to(&(h * h), &[]);
        loss.backward_with(&GradOptions::new().free_values())
            .unwrap();
        assert_eq!(loss.try_item(), Ok(25.0));
        assert!(
            matches!(h.try_item(), Err(Error::ValueFreed { .. })),
            "{:?}",
            h.try_item()
        );
    }
}
