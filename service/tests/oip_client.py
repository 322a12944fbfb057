"""Drive a running score-service with Triton's Open Inference Protocol client, as a user
of KServe or Triton would: health, metadata, then inference with the client's defaults
(binary inputs, binary outputs) and again with JSON data, compared with onnxruntime's
recorded answers in the zoo's index.

    python service/tests/oip_client.py HOST:PORT MODEL models/zoo/index.json
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import triton_to_np_dtype

url, model, index_path = sys.argv[1:4]
with open(index_path) as file:
    entry = json.load(file)[model]

client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready(model), "model not ready"
metadata = client.get_model_metadata(model)
assert metadata["name"] == model and metadata["platform"] == "onnx_onnxv1", metadata
server = client.get_server_metadata()
assert "binary_tensor_data" in server["extensions"], server


def array(tensor):
    """A tensor of the index as numpy holds it (null is NaN; BYTES as objects)."""
    if tensor["datatype"] == "BYTES":
        return np.array(tensor["data"], dtype=object)
    data = np.array(tensor["data"], dtype=object)
    data[data == None] = np.nan  # noqa: E711 (element-wise)
    return data.astype(triton_to_np_dtype(tensor["datatype"]))


def infer(binary):
    inputs = []
    for name, tensor in entry["inputs"].items():
        values = array(tensor)
        request_input = httpclient.InferInput(name, list(values.shape), tensor["datatype"])
        request_input.set_data_from_numpy(values, binary_data=binary)
        inputs.append(request_input)
    if binary:
        # The client's default: no outputs named, every output asked for as binary.
        return client.infer(model, inputs, request_id="triton-client-binary")
    requested = [httpclient.InferRequestedOutput(o["name"], binary_data=False) for o in metadata["outputs"]]
    return client.infer(model, inputs, outputs=requested, request_id="triton-client-json")


def compare(result, how):
    for name, wanted in entry["outputs"].items():
        got = result.as_numpy(name)
        assert got is not None, f"{how}: no output {name}"
        if wanted["datatype"] == "BYTES":
            got = np.array([v.decode() if isinstance(v, bytes) else v for v in got.ravel()], dtype=object)
            want = np.array(wanted["data"], dtype=object).ravel()
            assert list(got) == list(want), f"{how} {name}: {got} != {want}"
        else:
            want = array(wanted)
            assert got.shape == want.shape, f"{how} {name}: shape {got.shape}, onnxruntime's {want.shape}"
            if np.issubdtype(got.dtype, np.floating):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{how} {name}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{how} {name}")
        print(f"{model}.{name} ({how}): {got.shape} {got.dtype} matches onnxruntime")


result = infer(binary=True)
assert result.get_response()["id"] == "triton-client-binary", result.get_response()
assert all("binary_data_size" in o.get("parameters", {}) for o in result.get_response()["outputs"]), result.get_response()
compare(result, "binary")
has_nan = any(v is None for t in entry["inputs"].values() for v in np.array(t["data"], dtype=object).ravel())
if not has_nan:  # JSON cannot carry NaN
    result = infer(binary=False)
    assert result.get_response()["id"] == "triton-client-json", result.get_response()
    compare(result, "json")
