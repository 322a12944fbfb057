"""The baseline for `cargo xtask bench --model`: the Flask + onnxruntime service a user
would otherwise write to serve the same .onnx file (MODEL), with the same /score contract."""
import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request

session = ort.InferenceSession(os.environ["MODEL"], providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
app = Flask(__name__)


@app.route("/score", methods=["POST"])
def score():
    rows = np.atleast_2d(np.array(request.json["X"], dtype=np.float32))
    outputs = session.run(None, {input_name: rows})
    answer = {"score": outputs[0].reshape(len(rows), -1)[:, 0].tolist()}
    if len(outputs) > 1:
        answer["probabilities"] = outputs[1].tolist()
    return jsonify(answer)
