//! tract's own time per run of a model, without HTTP: what `cargo xtask bench --model`
//! sets beside the request latencies, so the HTTP overhead is visible.
//!
//!     cargo run --release --example model_timing -- MODEL.onnx ROWS POOL
//!     cargo run --release --example model_timing -- MODEL.onnx --row-size
//!
//! The second form prints how many values one row of the model's one input holds, read
//! by the service's own loader (what the bench writes its pool and requests with).
//!
//! POOL holds rows as little-endian f64 values, each as many as one row of the model's
//! one input holds (20 features, or a 28x28 image; the bench writes one); each run scores
//! the next ROWS of them, so no batch is scored twice in a row and the time is that of
//! rows the processor has not just seen.

use std::time::Instant;

use anyhow::{Context, ensure};
use score_service::model::{self, Array, Data, Dim};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(rows)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: model_timing MODEL.onnx ROWS POOL, or model_timing MODEL.onnx --row-size");
    };
    let model = model::load(&path, &Default::default())?;
    let [input] = model.inputs() else {
        anyhow::bail!("{path} takes several inputs; the timing feeds one");
    };
    let row_shape: Vec<usize> = input.shape[1..]
        .iter()
        .map(|dim| match dim {
            Dim::Fixed(size) => *size,
            Dim::Dynamic => 1,
        })
        .collect();
    let width: usize = row_shape.iter().product();
    if rows == "--row-size" {
        println!("{width}");
        return Ok(());
    }
    let rows: usize = rows.parse()?;
    let pool = args.next().context("usage: model_timing MODEL.onnx ROWS POOL")?;
    let values: Vec<f64> = std::fs::read(&pool)
        .with_context(|| format!("read {pool}"))?
        .chunks_exact(8)
        .map(|bytes| f64::from_le_bytes(bytes.try_into().expect("chunks of 8")))
        .collect();
    ensure!(
        values.len().is_multiple_of(width),
        "{pool} holds {} values, not rows of the model's {width} features",
        values.len()
    );
    let shape: Vec<usize> = std::iter::once(rows).chain(row_shape).collect();
    let batches: Vec<Array> = values
        .chunks_exact(rows * width)
        .map(|values| {
            let data = model::convert(Data::F64(values.to_vec()), input.element)
                .or_else(|_| {
                    // Features drawn as doubles: the model's float32 is their nearest value.
                    let narrowed = values.iter().map(|v| *v as f32).collect();
                    model::convert(Data::F32(narrowed), input.element)
                })
                .context("the pool's values as the model's input type")?;
            Ok(Array {
                shape: shape.clone(),
                data,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        batches.len() >= 2,
        "{pool} holds fewer than two batches of {rows} rows of {width} features"
    );
    // Warm up, and learn how long a run takes, so each trial lasts about 0.2 s whatever
    // the model (a forest's row takes a microsecond, a CNN's batch of 64 milliseconds);
    // the median of seven trials resists a busy neighbour.
    let mut next = batches.iter().cycle();
    let (warm, mut warmed) = (Instant::now(), 0u32);
    while warmed < 100 && (warmed < 5 || warm.elapsed().as_secs_f64() < 0.5) {
        let batch = next.next().context("the pool is not empty")?;
        model.predict(vec![batch.clone()])?;
        warmed += 1;
    }
    let per_run = warm.elapsed().as_secs_f64() / f64::from(warmed);
    let runs = ((0.2 / per_run) as usize).clamp(10, 20_000);
    let mut trials: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for batch in next.by_ref().take(runs) {
                std::hint::black_box(model.predict(vec![batch.clone()])?);
            }
            Ok(started.elapsed().as_secs_f64() * 1e6 / runs as f64)
        })
        .collect::<anyhow::Result<_>>()?;
    trials.sort_by(f64::total_cmp);
    let median = trials[trials.len() / 2];
    println!("rows={rows} runs={runs} trials=7 median_us={median:.2}");
    Ok(())
}
