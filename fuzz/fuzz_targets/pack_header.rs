//! Pack headers come from storage, which holdfast does not trust.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = holdfast_core::pack::decode_header("fuzz", data);
    // The whole-pack path too, with a fixed key (decryption fails, but lengths are parsed first).
    let key = holdfast_core::crypto::MasterKey::generate();
    let _ = holdfast_core::pack::read_header("fuzz", &key, data);
});
