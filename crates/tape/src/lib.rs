//! The tape engine.
