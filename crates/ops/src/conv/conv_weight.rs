//! `conv_weight`: the adjoint of a convolution in its weight, the weight gradient.
//!
//! For the convolution `conv(x, w) → y` of a geometry, `conv_weight(x, y)` is the `w̄` with
//! `⟨conv_weight(x, y), v⟩ = ⟨y, conv(x, v)⟩` for all `v`: per group, `Σ_n y_n ·
//! im2col(x_n)ᵀ`. It is what `conv`'s VJP returns for the weight, and bilinear:
//! - VJP (cotangent `v̄` of the weight-shaped output): `x̄ = conv_transpose(y, v̄)`,
//!   `ȳ = conv(x, v̄)`;
//! - JVP: `conv_weight(ẋ, y) + conv_weight(x, ẏ)`.
//!
//! It is made by the rules of the other two convolution primitives, never called directly.

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::geometry::Geometry;
use super::{Conv, ConvTranspose, bilinear_jvp, spec_attributes};

/// The weight gradient of a convolution; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConvWeight {
    geometry: Geometry,
}

impl ConvWeight {
    pub(crate) fn of(geometry: Geometry) -> Self {
        ConvWeight { geometry }
    }
}

impl<T: Float> Rule<T> for ConvWeight {
    fn name(&self) -> &'static str {
        if self.geometry.spatial == 1 {
            "conv1d_weight"
        } else {
            "conv2d_weight"
        }
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        spec_attributes(&Default::default(), Some(&self.geometry))
    }

    fn madds(&self, _: &[&[usize]], _: &[usize]) -> u64 {
        self.geometry.madds()
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let g = self.geometry;
        g.expect([x[0].shape(), x[1].shape()], [g.x_shape(), g.y_shape()])?;
        Ok(Tensor::from_array(g.conv_weight(x[0].view(), x[1].view())))
    }

    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, v: &Val<'t, T>) -> Cotangents<'t, T> {
        let geo = self.geometry;
        let (x, y) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0)
                .then(|| Val::apply(ConvTranspose::of(geo), &[y, v])),
            cx.needs(1).then(|| Val::apply(Conv::of(geo), &[x, v])),
        ])
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        bilinear_jvp(|| ConvWeight::of(self.geometry), cx, t)
    }
}
