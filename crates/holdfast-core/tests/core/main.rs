//! The core's integration tests, one module per area, linked into one test binary (a binary
//! per file linked the library again for each). Run one area with
//! `cargo test -p holdfast-core --test core -- hostile::`.

mod hostile;
mod index_files;
mod memory_backend;
