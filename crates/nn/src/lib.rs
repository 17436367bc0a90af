//! retrograd-nn: layers, losses, initialisers, optimisers and checkpoints.
