//! retrograd: the facade.
pub use retrograd_nn as nn;
pub use retrograd_ops as ops;
pub use retrograd_tape as tape;
