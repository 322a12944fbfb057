//! Loading a model from bytes: a corrupt or hostile file is refused with an error, never
//! a crash, a hang or memory without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = score_service::fuzzing::load_model(bytes);
});
