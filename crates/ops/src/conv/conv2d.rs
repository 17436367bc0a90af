//! `conv1d`/`conv2d`: cross-correlation of a batch of images with a bank of filters, as
//! PyTorch's `conv2d` (NCHW input, weight `[O, C/groups, kh, kw]`, no flip).
//!
//! `y[n, o, i, j] = Σ_{c ∈ group(o), a, b} w[o, c, a, b] · xpad[n, c, i·s + a·d, j·s + b·d]`.
//! Bilinear in `(x, w)`, so its derivatives are the two other convolution primitives:
//! - VJP: `x̄ = conv_transpose(ȳ, w)` ([`ConvTranspose`]), `w̄ = conv_weight(x, ȳ)`
//!   ([`ConvWeight`]); each is computed only when the sweep needs it;
//! - JVP: `ẏ = conv(ẋ, w) + conv(x, ẇ)`.

use retrograd_tape::{Cotangents, Float, Operand, Rule, RuleCtx, Tensor, Val};

use super::geometry::Geometry;
use super::{ConvSpec, ConvTranspose, ConvWeight, bilinear_jvp, spec_attributes};

/// The convolution; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Conv {
    spec: ConvSpec,
    spatial: usize,
    geometry: Option<Geometry>,
}

impl Conv {
    /// A 2-D convolution (`[N, C, H, W]` inputs) with these settings.
    pub fn new_2d(spec: ConvSpec) -> Self {
        Conv {
            spec,
            spatial: 2,
            geometry: None,
        }
    }

    /// A 1-D convolution (`[N, C, L]` inputs); `spec`'s pairs must have equal components.
    pub fn new_1d(spec: ConvSpec) -> Self {
        Conv {
            spatial: 1,
            ..Conv::new_2d(spec)
        }
    }

    /// The convolution of a resolved geometry (what the other primitives' rules apply).
    pub(crate) fn of(geometry: Geometry) -> Self {
        Conv {
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

impl<T: Float> Rule<T> for Conv {
    fn name(&self) -> &'static str {
        if self.spatial == 1 {
            "conv1d"
        } else {
            "conv2d"
        }
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        spec_attributes(&self.spec, self.geometry.as_ref())
    }

    fn madds(&self, inputs: &[&[usize]], _: &[usize]) -> u64 {
        match self.geometry {
            Some(g) => g.madds(),
            None => Geometry::of_conv(&self.spec, self.spatial, inputs[0], inputs[1])
                .map_or(0, |g| g.madds()),
        }
    }

    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>, String> {
        let g = match self.geometry {
            Some(g) => {
                g.expect([x[0].shape(), x[1].shape()], [g.x_shape(), g.w_shape()])?;
                g
            }
            None => Geometry::of_conv(&self.spec, self.spatial, x[0].shape(), x[1].shape())?,
        };
        self.geometry = Some(g);
        Ok(Tensor::from_array(g.conv(x[0].view(), x[1].view())))
    }

    fn vjp<'t>(&self, cx: &RuleCtx<'t, T>, g: &Val<'t, T>) -> Cotangents<'t, T> {
        let geo = self.resolved();
        let (x, w) = (cx.input(0), cx.input(1));
        Cotangents::from([
            cx.needs(0)
                .then(|| Val::apply(ConvTranspose::of(geo), &[g, w])),
            cx.needs(1)
                .then(|| Val::apply(ConvWeight::of(geo), &[x, g])),
        ])
    }

    fn jvp<'t>(&self, cx: &RuleCtx<'t, T>, t: &[Option<Val<'t, T>>]) -> Option<Val<'t, T>> {
        bilinear_jvp(|| Conv::of(self.resolved()), cx, t)
    }
}
