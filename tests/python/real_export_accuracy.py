"""Test accuracy of exported models on the real Fashion-MNIST test set,
beside the evaluate stage's own figure (a manual check; needs torch,
safetensors, onnxruntime and numpy).

python3 tests/python/real_export_accuracy.py MODEL.safetensors MODEL.onnx \
    outputs/evaluate@no-aug [--data /usr/share/datasets/fashion-mnist] [--mean 0.5 --std 0.5]
"""
import argparse
import gzip
import json
import os

import numpy as np
import onnxruntime as ort
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument("torch_model")
ap.add_argument("onnx_model")
ap.add_argument("evaluate_dir")
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--mean", type=float, default=0.5)
ap.add_argument("--std", type=float, default=0.5)
a = ap.parse_args()

raw = gzip.open(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")).read()[16:]
labels = np.frombuffer(gzip.open(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).read()[8:], dtype=np.uint8)
x = (np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1, 28, 28).astype(np.float32) / 255 - a.mean) / a.std

with safe_open(a.torch_model, "pt") as f:
    scope = {}
    exec(f.metadata()["torch_module"], scope)
net = scope["model"]
net.load_state_dict(load_file(a.torch_model))
net.eval()
with torch.no_grad():
    torch_logits = net(torch.from_numpy(x)).numpy()
onnx_logits = ort.InferenceSession(a.onnx_model, providers=["CPUExecutionProvider"]).run(["logits"], {"input": x})[0]

ours = json.load(open(os.path.join(a.evaluate_dir, "metrics.json")))["metrics"]["accuracy"]
pred = np.loadtxt(os.path.join(a.evaluate_dir, "predictions.csv"), delimiter=",", skiprows=1)
source, probs = pred[:, 1].astype(int), pred[:, 4:]


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


print(f"test accuracy: fmnist-pipe evaluate {ours:.4f}, pytorch {(torch_logits.argmax(1) == labels).mean():.4f}, "
      f"onnxruntime {(onnx_logits.argmax(1) == labels).mean():.4f}")
print(f"largest probability difference to predictions.csv: pytorch {np.abs(softmax(torch_logits)[source] - probs).max():.2e}, "
      f"onnxruntime {np.abs(softmax(onnx_logits)[source] - probs).max():.2e}")
