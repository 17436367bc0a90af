//! `conv_transpose1d`/`conv_transpose2d`: the adjoint of a convolution in its input, as
//! PyTorch's `conv_transpose2d` (weight `[C_in, C_out/groups, kh, kw]`).
//!
//! For the convolution `conv` that maps `[N, C_out, H', W']` to `[N, C_in, H, W]` with the
//! same weight, `conv_transpose(y, w)` is the `x` with `⟨conv_transpose(y, w), u⟩ =
//! ⟨y, conv(u, w)⟩` for all `u`: it spreads each input entry over a kernel-sized patch of
//! the output. It is the VJP of `conv` in its input, and bilinear:
//! - VJP (cotangent `ū` of the output): `ȳ = conv(ū, w)`, `w̄ = conv_weight(ū, y)`;
//! - JVP: `conv_transpose(ẏ, w) + conv_transpose(y, ẇ)`.

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::geometry::Geometry;
use super::{Conv, ConvSpec, ConvWeight, bilinear_jvp, spec_attributes};

/// The transposed convolution; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConvTranspose {
    spec: ConvSpec,
    spatial: usize,
    geometry: Option<Geometry>,
}

impl ConvTranspose {
    /// A 2-D transposed convolution with these settings (`output_padding` picks among the
    /// output sizes a strided convolution maps to the same input size).
    pub fn new_2d(spec: ConvSpec) -> Self {
        ConvTranspose {
            spec,
            spatial: 2,
            geometry: None,
        }
    }

    /// A 1-D transposed convolution (`[N, C, L]` inputs).
    pub fn new_1d(spec: ConvSpec) -> Self {
        ConvTranspose {
            spatial: 1,
            ..ConvTranspose::new_2d(spec)
        }
    }

    /// The transpose of the convolution of a resolved geometry.
    pub(crate) fn of(geometry: Geometry) -> Self {
        ConvTranspose {
            spec: ConvSpec::default(),
            spatial: geometry.spatial,
            geometry: Some(geometry),
        }
    }

    fn resolved(&self) -> Geometry {
        self.geometry
            .expect("the forward pass resolved the geometry")
    }
}

impl<T: Float> Rule<T> for ConvTranspose {
    fn name(&self) -> &'static str {
        if self.spatial == 1 {
            "conv_transpose1d"
        } else {
            "conv_transpose2d"
        }
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        spec_attributes(&self.spec, self.geometry.as_ref())
    }

    fn madds(&self, inputs: &[&[usize]], _: &[usize]) -> u64 {
        match self.geometry {
            Some(g) => g.madds(),
            None => Geometry::of_transpose(&self.spec, self.spatial, inputs[0], inputs[1])
                .map_or(0, |g| g.madds()),
        }
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let (y, w) = (x[0], x[1]);
        let g = match self.geometry {
            Some(g) => {
                g.expect([y.shape(), w.shape()], [g.y_shape(), g.w_shape()])?;
                g
            }
            None => Geometry::of_transpose(&self.spec, self.spatial, y.shape(), w.shape())?,
        };
        self.geometry = Some(g);
        Ok(Tensor::from_array(g.conv_transpose(y.view(), w.view())))
    }

    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, u: &Val<'t, T>) -> Cotangents<'t, T> {
        let geo = self.resolved();
        let (y, w) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0).then(|| Val::apply(Conv::of(geo), &[u, w])),
            cx.needs(1)
                .then(|| Val::apply(ConvWeight::of(geo), &[u, y])),
        ])
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        bilinear_jvp(|| ConvTranspose::of(self.resolved()), cx, t)
    }
}
