//! The embedded fake of fal (queue, sync run, storage, generated images), used by `--mock`,
//! `fal-proxy mock-fal` and the tests.
