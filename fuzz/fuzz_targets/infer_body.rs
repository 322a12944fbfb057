//! The Open Inference Protocol's request parser: any bytes give a request or an error
//! naming the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = score_service::fuzzing::parse_infer_request(body) {
        assert_eq!(request.values, request.rows * request.width);
    }
});
