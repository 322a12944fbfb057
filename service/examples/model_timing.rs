//! tract's own time per run of a model, without HTTP: what `cargo xtask bench --model`
//! sets beside the request latencies, so the HTTP overhead is visible.
//!
//!     cargo run --release --example model_timing -- MODEL.onnx ROWS

use std::time::Instant;

use score_service::model::{self, Batch};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(rows)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: model_timing MODEL.onnx ROWS");
    };
    let rows: usize = rows.parse()?;
    let model = model::load(&path, &Default::default())?;
    let width = model.input_width().unwrap_or(2);
    // The same deterministic rows the bench sends.
    let values: Vec<f64> = (0..rows * width)
        .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
        .collect();
    let batch = Batch {
        rows,
        width,
        values: &values,
    };
    for _ in 0..100 {
        model.predict(&batch)?;
    }
    // About 0.2 s per trial; the median of seven trials resists a busy neighbour.
    let runs = (200_000 / rows.max(1)).clamp(50, 20_000);
    let mut trials: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..runs {
                std::hint::black_box(model.predict(&batch)?);
            }
            Ok(started.elapsed().as_secs_f64() * 1e6 / runs as f64)
        })
        .collect::<anyhow::Result<_>>()?;
    trials.sort_by(f64::total_cmp);
    let median = trials[trials.len() / 2];
    println!("rows={rows} runs={runs} trials=7 median_us={median:.2}");
    Ok(())
}
