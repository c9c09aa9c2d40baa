"""Drives a running `kiln serve` with the unmodified Triton HTTP client (tritonclient[http]).

    python tritonclient_check.py HOST:PORT ROW_JSON EXPECTED_VALUE

Checks liveness, readiness, model metadata, and inference with binary tensors (the client's
default) and with JSON tensors, each against EXPECTED_VALUE (the native API's answer for the
same row, which must match exactly). Exits non-zero with a message on the first mismatch.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> None:
    url, row_json, expected = sys.argv[1], sys.argv[2], float(sys.argv[3])
    row = json.loads(row_json)
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready("bikes"), "model not ready"
    assert client.is_model_ready("bikes", "1"), "version 1 not ready"
    meta = client.get_model_metadata("bikes")
    assert meta["name"] == "bikes", meta
    outputs = [o["name"] for o in meta["outputs"]]
    assert "predictions" in outputs, outputs

    for binary in (True, False):
        inputs = []
        for spec in meta["inputs"]:
            name, dtype = spec["name"], spec["datatype"]
            if dtype == "BYTES":
                data = np.array([str(row[name]).encode()], dtype=np.object_)
            elif dtype == "BOOL":
                data = np.array([bool(row[name])], dtype=np.bool_)
            else:
                data = np.array([row[name]], dtype=np.float64)
            tensor = httpclient.InferInput(name, [1], dtype)
            tensor.set_data_from_numpy(data, binary_data=binary)
            inputs.append(tensor)
        wanted = [
            httpclient.InferRequestedOutput("predictions", binary_data=binary),
            httpclient.InferRequestedOutput("request_id", binary_data=False),
        ]
        result = client.infer("bikes", inputs, outputs=wanted, request_id=f"triton-{binary}")
        got = result.as_numpy("predictions")
        assert got.shape == (1,), got.shape
        assert got[0] == expected, f"binary={binary}: {got[0]!r} != {expected!r}"
        ids = result.as_numpy("request_id")
        assert ids is not None and len(ids) == 1, ids
        response = result.get_response()
        assert response["model_name"] == "bikes", response
        assert response["id"] == f"triton-{binary}", response

        # A version in the path reaches the same model.
        result = client.infer("bikes", inputs, model_version="1")
        assert result.as_numpy("predictions")[0] == expected

    # A client mistake comes back as the client's exception, not a crash.
    bad = httpclient.InferInput("nonsense", [1], "FP64")
    bad.set_data_from_numpy(np.array([1.0]), binary_data=True)
    try:
        client.infer("bikes", [bad])
    except Exception as e:  # tritonclient raises InferenceServerException
        assert "nonsense" in str(e), str(e)
    else:
        raise AssertionError("an unknown input was accepted")
    print("tritonclient: ok (binary and JSON tensors)")


if __name__ == "__main__":
    main()
