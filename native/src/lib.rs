//! pinfold's native peer: what the `pinfold` binary runs on, as a library so that tests and
//! benchmarks drive the same code.

pub mod store;
