"""onnxruntime's own time per run of a model, with one intra-op thread: the reference
`cargo xtask bench --model` sets beside score-service's (service/examples/model_timing.rs),
on the same rows: each run scores the next ROWS of the pool of rows the bench wrote
(little-endian f64 values), as model_timing does.

    python bench/ort_timing.py MODEL.onnx ROWS POOL
"""

import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    path, rows, pool = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    single = session.get_inputs()[0]
    # One row of the input: its shape after the batch (28x28x1 for an image), each
    # dimension the model leaves open taken as 1, as model_timing takes it.
    row_shape = [dim if isinstance(dim, int) else 1 for dim in single.shape[1:]]
    width = int(np.prod(row_shape))
    # The same rows model_timing scores, converted to float32 as it converts them.
    values = np.fromfile(pool, dtype="<f8").astype(np.float32)
    batches = [
        values[start : start + rows * width].reshape([rows, *row_shape])
        for start in range(0, len(values) - rows * width + 1, rows * width)
    ]
    if len(batches) < 2:
        sys.exit(f"{pool} holds fewer than two batches of {rows} rows of {width} features")
    # Warm up, and learn how long a run takes, so each trial lasts about 0.2 s whatever
    # the model (a forest's row takes a microsecond, a CNN's batch of 64 milliseconds).
    warm, turn = time.perf_counter(), 0
    while turn < 100 and (turn < 5 or time.perf_counter() - warm < 0.5):
        session.run(None, {single.name: batches[turn % len(batches)]})
        turn += 1
    per_run = (time.perf_counter() - warm) / turn
    runs = min(max(int(0.2 / per_run), 10), 20_000)
    trials = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, {single.name: batches[turn % len(batches)]})
            turn += 1
        trials.append((time.perf_counter() - started) * 1e6 / runs)
    print(f"rows={rows} runs={runs} trials=7 median_us={sorted(trials)[3]:.2f}")


if __name__ == "__main__":
    main()
