//! The benchmark's rows: one pool of distinct rows per model for the timing runs, and
//! the wrk scripts and bodies of its HTTP loads, built from the same values.

use std::path::Path;

use anyhow::Context;

/// Rows per request through HTTP: one, and a batch.
pub(super) const REQUEST_ROWS: [usize; 2] = [1, 64];

/// Distinct rows the timing runs take their batches from, the next batch each run: a
/// batch scored again and again lets a branch predictor learn its paths through the trees
/// (onnxruntime's walk then ran 2.2-2.7x faster on a replayed 64-row batch than on the
/// pool, on an AMD Zen 4), and a server rarely sees the same rows twice.
pub(super) const TIMED_POOL_ROWS: usize = 16_384;
/// At most this many values in a pool: 16,384 images of 28x28 would take 100 MB.
const TIMED_POOL_VALUES: usize = 1 << 22;

/// Feature value `index` of the benchmark's rows, the same in every run: a SplitMix64
/// hash of the index onto steps of 0.01 in [-2, 2], so that rows do not repeat (the
/// earlier pattern repeated every 101 rows: a 1024-row batch held 101 distinct rows).
fn feature(index: usize) -> f64 {
    let mut z = (index as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % 401) as f64 / 100.0 - 2.0
}

/// Writes the timing runs' rows, `width` features each, as little-endian f64 values
/// (what `model_timing` and `ort_timing.py` read).
pub(super) fn write_row_pool(path: &Path, width: usize) -> anyhow::Result<()> {
    let rows = TIMED_POOL_ROWS.min(TIMED_POOL_VALUES / width.max(1));
    let bytes: Vec<u8> = (0..rows * width)
        .flat_map(|index| feature(index).to_le_bytes())
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// Distinct rows an HTTP load cycles through: its requests take them in turn, so that a
/// tree walk's branches are not the same from one request to the next (a replayed body
/// lets the branch predictor learn them), whatever the rows per request.
pub(super) const DISTINCT_ROWS: usize = 1024;

/// Writes, under `dir`, the wrk scripts and bodies for a model `width` features wide:
/// `score-{rows}.lua` and `infer-{rows}.lua` (input named "X", as skl2onnx names it),
/// each sending the next of `DISTINCT_ROWS / rows` bodies of distinct rows in turn (each
/// wrk thread starting at its own offset), and `score-1.json`, the first 1-row body.
pub(super) fn write_model_requests(dir: &Path, model: &str, width: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for rows in REQUEST_ROWS {
        let bodies = (DISTINCT_ROWS / rows).max(1);
        let matrices: Vec<Vec<f64>> = (0..bodies)
            .map(|body| {
                (body * rows * width..(body + 1) * rows * width)
                    .map(feature)
                    .collect()
            })
            .collect();
        let score: Vec<String> = matrices
            .iter()
            .map(|values| {
                let matrix: Vec<&[f64]> = values.chunks(width).collect();
                serde_json::json!({"X": matrix}).to_string()
            })
            .collect();
        let infer: Vec<String> = matrices
            .iter()
            .map(|values| {
                serde_json::json!({"inputs": [{"name": "X", "shape": [rows, width], "datatype": "FP32", "data": values}]})
                    .to_string()
            })
            .collect();
        for (kind, bodies) in [("score", &score), ("infer", &infer)] {
            std::fs::write(
                dir.join(format!("{kind}-{rows}.lua")),
                cycling_script(model, rows, bodies),
            )?;
        }
        if rows == 1 {
            std::fs::write(dir.join("score-1.json"), &score[0])?;
        }
    }
    Ok(())
}

/// A wrk script that POSTs `bodies` in turn, each thread from its own offset.
fn cycling_script(model: &str, rows: usize, bodies: &[String]) -> String {
    // Level-1 long strings: JSON never contains "]=]".
    let bodies: Vec<String> = bodies.iter().map(|body| format!("[=[{body}]=]")).collect();
    format!(
        "-- Written by cargo xtask bench for {model}: {rows}-row requests, {count} distinct bodies in turn.\n\
         local bodies = {{\n{bodies}\n}}\n\
         turn = 0\n\
         local threads = 0\n\
         setup = function(thread)\n  thread:set(\"turn\", threads * 509 % #bodies)\n  threads = threads + 1\nend\n\
         local headers = {{[\"Content-Type\"] = \"application/json\"}}\n\
         request = function()\n  turn = turn % #bodies + 1\n  return wrk.format(\"POST\", nil, headers, bodies[turn])\nend\n",
        count = bodies.len(),
        bodies = bodies.join(",\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies a script sends, parsed.
    fn bodies_of(script: &str) -> Vec<serde_json::Value> {
        script
            .split("[=[")
            .skip(1)
            .map(|rest| serde_json::from_str(rest.split("]=]").next().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn the_request_scripts_send_every_row_once_and_threads_start_apart() {
        let dir = std::env::temp_dir().join(format!("xtask-distinct-rows-{}", std::process::id()));
        write_model_requests(&dir, "forest", 3).unwrap();
        for rows in REQUEST_ROWS {
            let score = bodies_of(&std::fs::read_to_string(dir.join(format!("score-{rows}.lua"))).unwrap());
            let infer = bodies_of(&std::fs::read_to_string(dir.join(format!("infer-{rows}.lua"))).unwrap());
            assert_eq!(score.len(), DISTINCT_ROWS / rows, "{rows} row(s)");
            assert_eq!(infer.len(), score.len());
            let mut distinct = std::collections::HashSet::new();
            for (score, infer) in score.iter().zip(&infer) {
                let matrix = score["X"].as_array().unwrap();
                assert_eq!(matrix.len(), rows);
                assert!(
                    matrix.iter().all(|row| row.as_array().unwrap().len() == 3),
                    "as wide as asked"
                );
                let flat: Vec<&serde_json::Value> =
                    matrix.iter().flat_map(|row| row.as_array().unwrap()).collect();
                assert_eq!(
                    infer["inputs"][0]["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .collect::<Vec<_>>(),
                    flat
                );
                assert_eq!(infer["inputs"][0]["shape"], serde_json::json!([rows, 3]));
                distinct.extend(matrix.iter().map(|row| row.to_string()));
            }
            assert_eq!(distinct.len(), DISTINCT_ROWS, "{rows} row(s): no row repeats");
            let script = std::fs::read_to_string(dir.join(format!("score-{rows}.lua"))).unwrap();
            assert!(script.contains("request = function()"), "{script}");
            assert!(script.contains("thread:set(\"turn\", threads * 509"), "{script}");
        }
        let first: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("score-1.json")).unwrap()).unwrap();
        assert_eq!(
            first,
            bodies_of(&std::fs::read_to_string(dir.join("score-1.lua")).unwrap())[0]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_timing_pool_holds_distinct_rows_in_range() {
        let width = 20;
        let path = std::env::temp_dir().join(format!("xtask-row-pool-{}.f64", std::process::id()));
        write_row_pool(&path, width).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(bytes.len(), TIMED_POOL_ROWS * width * 8);
        let values: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert!(
            values.iter().all(|v| (-2.0..=2.0).contains(v)),
            "values in [-2, 2]"
        );
        let rows: std::collections::HashSet<Vec<u64>> = values
            .chunks_exact(width)
            .map(|row| row.iter().map(|v| v.to_bits()).collect())
            .collect();
        assert_eq!(rows.len(), TIMED_POOL_ROWS, "no row repeats");
        // Every step of the range is used, not a few values over and over.
        let steps: std::collections::HashSet<u64> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(steps.len(), 401);
    }
}
