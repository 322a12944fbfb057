//! The /score body reader: any bytes give rows, records or an error naming the problem,
//! never a panic; what it accepts as numbers are finite, and what the identity model
//! echoes is itself a body it accepts, with the same numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use score_service::fuzzing::read_score_body;

fuzz_target!(|body: &[u8]| {
    if let Ok(read) = read_score_body(body) {
        assert!(read.values.iter().all(|v| v.is_finite()));
        let mut again = br#"{"X":"#.to_vec();
        again.extend_from_slice(&read.echoed);
        again.push(b'}');
        let reread = read_score_body(&again).expect("the echo parses");
        assert_eq!(reread.values, read.values);
    }
});
