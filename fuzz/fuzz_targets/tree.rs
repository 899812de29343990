//! Trees decide where restore writes: decoding must reject every unsafe name, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = holdfast_core::id::BlobId([0; 32]);
    if let Ok(tree) = holdfast_core::tree::Tree::decode(&id, data) {
        for n in &tree.nodes {
            assert!(holdfast_core::tree::check_name(&n.name).is_ok());
        }
    }
});
