"""Runs an exported model on raw inputs and writes its class probabilities.

usage: run_exported.py torch|onnx MODEL INPUTS.f32 OUTPUT.f32

INPUTS: n x 1 x 28 x 28 little-endian float32, normalized as in training.
Exit 3 when the framework is not installed (the test then skips).
"""
import sys

kind, model, inputs, output = sys.argv[1:]
try:
    import numpy as np

    if kind == "onnx":
        import onnxruntime as ort
    else:
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file
except ImportError as e:
    print(f"skipped: {e}", file=sys.stderr)
    sys.exit(3)

x = np.fromfile(inputs, dtype="<f4").reshape(-1, 1, 28, 28)
if kind == "onnx":
    try:
        import onnx  # the reference checker, where installed

        onnx.checker.check_model(onnx.load(model), full_check=True)
    except ImportError:
        pass
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": x})[0]
else:
    with safe_open(model, "pt") as f:
        code = f.metadata()["torch_module"]
    scope = {}
    exec(code, scope)
    net = scope["model"]
    net.load_state_dict(load_file(model))  # strict: every name and shape must match
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
e = np.exp(logits - logits.max(axis=1, keepdims=True))
(e / e.sum(axis=1, keepdims=True)).astype("<f4").tofile(output)
