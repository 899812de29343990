//! Index files come from storage, which holdfast does not trust.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = holdfast_core::index::IndexFile::decode("fuzz", data) {
        // Whatever decodes re-encodes to the same bytes.
        assert_eq!(idx.encode(), data);
    }
});
