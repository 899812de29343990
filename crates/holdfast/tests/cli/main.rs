//! The CLI's integration tests, one module per area, linked into one test binary: each
//! separate test file linked the whole program and its S3 server again (two dozen links of a
//! few hundred megabytes each), which cost CI minutes and gigabytes of disk. Run one area with
//! `cargo test -p holdfast --test cli -- s3::` (a module path filters the tests).

#[macro_use]
mod common;

mod app;
mod config_init;
mod console;
mod console_browser;
mod corruption;
mod crash;
mod damage;
mod drill;
mod dry_run;
mod export;
mod failures;
mod find_and_reference;
mod golden;
mod import;
mod index_table;
mod lifecycle;
mod mount;
mod quiesce;
mod rewrite;
mod roundtrip;
mod s3;
mod scale;
