//! A private reshape for the matmul rules, which promote 1-D operands to matrices (and
//! their cotangents with them). Row-major, the same elements in the same order; a
//! reshape is linear, so its VJP is the reshape back and its JVP the same reshape.

use smallvec::smallvec;

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Shape, Tensor, Val};

/// `x` with a new shape of the same number of elements.
#[derive(Debug, Clone)]
pub(crate) struct Reshape(Shape);

/// `x` reshaped to `shape`; `x` itself (nothing recorded) when it already has it.
#[track_caller]
pub(crate) fn reshape<'t, T: Float, X: Operand<'t, T>>(x: &X, shape: &[usize]) -> X {
    if x.shape().as_slice() == shape {
        x.clone()
    } else {
        X::apply(Reshape(Shape::from_slice(shape)), &[x])
    }
}

impl<T: Float> Rule<T> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn attributes(&self) -> Vec<(&'static str, String)> {
        vec![("shape", format!("{:?}", self.0.as_slice()))]
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let v = x[0].view();
        let r = v.to_shape(self.0.as_slice()).map_err(|_| {
            format!(
                "cannot reshape {:?} to {:?}",
                x[0].shape(),
                self.0.as_slice()
            )
        })?;
        Ok(Tensor::from_array(r.into_owned()))
    }
    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        smallvec![Some(reshape(g, &cx.input_shape(0)))]
    }
    fn jvp<'t>(&self, _: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        t[0].as_ref().map(|t| reshape(t, &self.0))
    }
}
