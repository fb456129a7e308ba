"""The main CNN trained by plain PyTorch, as a `cmd` stage of fmnist-pipe.

It reads the splits that the `preprocess` stage wrote as NumPy arrays,
trains with the same recipe as the built-in `main` variant (Adam, batch
64, the reference's normalisation), keeps the weights of the epoch with
the best validation accuracy (the test set is never used to choose), and
writes its test-set probabilities as `predictions.csv`: one row per image
of test-images.npy, `index,prob_0,...,prob_9`. fmnist-pipe evaluates that
file like one of its own models.

    python train.py --seed 1 --epochs 5 --data ../../outputs/preprocess --out predictions.csv
"""
import argparse
import copy
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def main_cnn(dropout):
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        *block(1, 32, True), *block(32, 64, True), *block(64, 128, False),
        nn.Flatten(), nn.Linear(6272, 256), nn.ReLU(), nn.Dropout(dropout), nn.Linear(256, 10),
    )


def split(data, name, mean, std):
    images = np.load(os.path.join(data, f"{name}-images.npy"))
    labels = np.load(os.path.join(data, f"{name}-labels.npy"))
    x = (torch.from_numpy(images).float().div(255.0).sub(mean).div(std)).unsqueeze(1)
    return x, torch.from_numpy(labels).long()


def accuracy(model, x, y, batch=1000):
    model.eval()
    with torch.no_grad():
        right = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                    for i in range(0, len(x), batch))
    return right / len(x)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--seed", type=int, required=True)
    a.add_argument("--epochs", type=int, default=5)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument("--dropout", type=float, default=0.25)
    a.add_argument("--data", required=True, help="preprocess's output directory")
    a.add_argument("--out", required=True, help="the predictions CSV to write")
    args = a.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(int(os.environ.get("FMNIST_PIPE_THREADS", "1")))
    # preprocess's defaults: mean 0.5, std 0.5.
    x_train, y_train = split(args.data, "train", 0.5, 0.5)
    x_val, y_val = split(args.data, "validation", 0.5, 0.5)
    x_test, _ = split(args.data, "test", 0.5, 0.5)
    model = main_cnn(args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    best, best_state = -1.0, None
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        val = accuracy(model, x_val, y_val)
        print(f"epoch {epoch}/{args.epochs}: train loss {total / len(order):.4f}, val acc {val:.2%}", flush=True)
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        probs = torch.cat([F.softmax(model(x_test[i:i + 1000]), dim=1) for i in range(0, len(x_test), 1000)])
    with open(args.out, "w") as f:
        f.write("index," + ",".join(f"prob_{c}" for c in range(10)) + "\n")
        for i, row in enumerate(probs.tolist()):
            f.write(f"{i}," + ",".join(f"{p:.6f}" for p in row) + "\n")
    print(f"best validation accuracy {best:.2%}; wrote {args.out}")


if __name__ == "__main__":
    main()
