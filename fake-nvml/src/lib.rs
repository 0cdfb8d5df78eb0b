//! A fake `libnvidia-ml.so.1` for tests: it exports the NVML C entry points
//! gpusel, `nvml-wrapper` and the official Python binding (`nvidia-ml-py`)
//! call, and answers them from a JSON scenario file named by
//! `FAKE_NVML_SCENARIO` (see `tests/fixtures/nvml/README.md` for the
//! format). The file is read again whenever it changes, so a test can change
//! GPU state while gpusel waits.
//!
//! Every entry point catches panics and answers an NVML error code; a field
//! the scenario leaves out answers `NVML_ERROR_NOT_SUPPORTED`, as a real
//! driver does for a query a board cannot answer.

#![warn(missing_docs)]
// The exports are C functions whose safety contract is nvml.h's: valid
// pointers of the documented types, or null where the header allows it.
#![allow(clippy::missing_safety_doc)]

mod abi;
mod exports;
mod handle;
mod scenario;
mod topology;
