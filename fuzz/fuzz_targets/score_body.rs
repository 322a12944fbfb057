//! The /score body scanner: any bytes give features or an error naming the problem,
//! never a panic; what it accepts holds only finite numbers, in equal rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use score_service::features::Features;

fuzz_target!(|body: &[u8]| {
    if let Ok(features) = Features::from_body(body) {
        assert!(features.rows() >= 1 && features.width() >= 1);
        assert_eq!(features.values().len(), features.rows() * features.width());
        assert!(features.values().iter().all(|v| v.is_finite()));
        let mut echoed = Vec::new();
        features.write_compact(&mut echoed);
        // What the identity model echoes is itself a body the scanner accepts.
        let mut again = br#"{"X":"#.to_vec();
        again.extend_from_slice(&echoed);
        again.push(b'}');
        let reparsed = Features::from_body(&again).expect("the echo parses");
        assert_eq!(reparsed.values(), features.values());
    }
});
