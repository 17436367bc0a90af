//! retrograd-ops: the primitives.
