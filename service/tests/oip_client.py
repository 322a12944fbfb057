"""Drive a running score-service with Triton's Open Inference Protocol client, as a user
of KServe or Triton would: health, metadata, then inference, compared with onnxruntime's
recorded answers.

    python service/tests/oip_client.py HOST:PORT MODEL models/expected.json
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient

url, model, expected_path = sys.argv[1:4]
with open(expected_path) as file:
    expected = json.load(file)[model]

client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready(model), "model not ready"
metadata = client.get_model_metadata(model)
assert metadata["name"] == model and metadata["platform"] == "onnx_onnxv1", metadata

rows = np.array(expected["inputs"], dtype=np.float32)
request_input = httpclient.InferInput(metadata["inputs"][0]["name"], list(rows.shape), "FP32")
request_input.set_data_from_numpy(rows, binary_data=False)
requested = [httpclient.InferRequestedOutput(output["name"], binary_data=False) for output in metadata["outputs"]]
result = client.infer(model, [request_input], outputs=requested, request_id="triton-client-1")
assert result.get_response()["id"] == "triton-client-1", result.get_response()

for name, wanted in expected["outputs"].items():
    got = result.as_numpy(name)
    wanted = np.array(wanted, dtype=got.dtype)
    if np.issubdtype(got.dtype, np.integer):
        np.testing.assert_array_equal(got, wanted, err_msg=name)
    else:
        np.testing.assert_allclose(got, wanted, rtol=1e-5, atol=1e-5, err_msg=name)
    print(f"{model}.{name}: {got.shape} {got.dtype} matches onnxruntime")
