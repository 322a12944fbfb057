//! The Open Inference Protocol's request parser, JSON and binary data: any bytes give a
//! request or an error naming the problem, never a panic; what it accepts holds as many
//! values as its shapes declare.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = score_service::fuzzing::parse_infer_request(body) {
        assert_eq!(request.values, request.declared);
        assert!(request.inputs >= 1 || request.values == 0);
    }
});
