"""onnxruntime's own time per run of a model, with one intra-op thread: the reference
`cargo xtask bench --model` sets beside score-service's (service/examples/model_timing.rs),
on the same deterministic rows.

    python bench/ort_timing.py MODEL.onnx ROWS
"""

import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    path, rows = sys.argv[1], int(sys.argv[2])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    single = session.get_inputs()[0]
    width = single.shape[1]
    # The same rows model_timing scores.
    x = np.array([((i * 37 % 101) / 50.0) - 1.0 for i in range(rows * width)], dtype=np.float32)
    x = x.reshape(rows, width)
    for _ in range(100):
        session.run(None, {single.name: x})
    runs = min(max(200_000 // rows, 50), 20_000)
    trials = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, {single.name: x})
        trials.append((time.perf_counter() - started) * 1e6 / runs)
    print(f"rows={rows} runs={runs} trials=7 median_us={sorted(trials)[3]:.2f}")


if __name__ == "__main__":
    main()
