//! Loading a model from bytes: a corrupt or hostile file is refused with an error, never
//! a crash, a hang or memory without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // tract is not hardened against every malformed graph: the service catches its
        // panics and refuses the model (the regression tests in service/tests/it/
        // model_limits.rs hold it to that). A panic there is known, not a finding;
        // anywhere else — our own code — it is, and libFuzzer's hook aborts on it.
        let libfuzzer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tract = info
                .location()
                .is_some_and(|at| at.file().contains("/tract-"));
            if !in_tract {
                libfuzzer(info);
            }
        }));
    },
    |bytes: &[u8]| {
        let _ = score_service::fuzzing::load_model(bytes);
    }
);
