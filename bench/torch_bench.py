"""The PyTorch twin of `fmnist-pipe bench`: the same main CNN, batch 64,
Adam, cross-entropy, on random data; prints the same figures.

python3 bench/torch_bench.py --threads 2 --batches 50
"""
import argparse
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn

    from torch_model import main_cnn
except ImportError:
    print("skipped: PyTorch is not installed (pip install torch)")
    sys.exit(0)


def run():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = main_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    times = []
    model.train()
    for k in range(a.batches + 3):
        t = time.perf_counter()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if k >= 3:
            times.append(time.perf_counter() - t)
    model.eval()
    xe = torch.randn(4096, 1, 28, 28)
    with torch.no_grad():
        for _ in range(2):
            t = time.perf_counter()
            for i in range(0, 4096, 256):
                model(xe[i:i + 256])
            eval_s = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"threads={a.threads} batch=64 train_img_per_s={64 / statistics.median(times):.0f} "
          f"eval_img_per_s={4096 / eval_s:.0f} peak_rss_mb={rss:.0f} torch={torch.__version__}")


run()
