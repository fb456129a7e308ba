"""A plain PyTorch training epoch, as a user writes one: the main CNN, Adam
(lr 0.001), cross-entropy, shuffled batches of 64 over every training
image, the whole loop timed. `fmnist-pipe bench --epoch` runs it beside
one epoch of a `train` stage on the same images.

python3 bench/torch_epoch.py --images train.u8 --labels train-labels.u8 \
    --mean 0.5 --std 0.5 --threads 2 --seed 1
"""
import argparse
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn

    from torch_model import main_cnn
except ImportError as e:
    print(f"skipped: {e} (pip install torch numpy)")
    sys.exit(0)


def run():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--mean", type=float, required=True)
    ap.add_argument("--std", type=float, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(np.fromfile(a.images, dtype=np.uint8).reshape(-1, 1, 28, 28))
    x = (x.float() / 255 - a.mean) / a.std
    y = torch.from_numpy(np.fromfile(a.labels, dtype=np.uint8).astype(np.int64))
    model = main_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n = len(y)
    t = time.perf_counter()
    perm = torch.randperm(n)
    total, correct = 0.0, 0
    for i in range(0, n, 64):
        idx = perm[i:i + 64]
        xb, yb = x[idx], y[idx]
        opt.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(yb)
        correct += (out.argmax(1) == yb).sum().item()
    secs = time.perf_counter() - t
    print(f"train_img_per_s={n / secs:.0f} seconds={secs:.1f} images={n} "
          f"train_acc={correct / n:.4f} torch={torch.__version__}")


run()
