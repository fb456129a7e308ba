"""The main CNN in PyTorch, as the benchmark scripts build it: three 3x3
convolution blocks (32, 64, 128 channels) with batch norm, a 256-unit
hidden layer with dropout 0.25, ten outputs (1,701,578 parameters)."""
import torch.nn as nn


def main_cnn():
    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return layers + ([nn.MaxPool2d(2)] if pool else [])

    return nn.Sequential(
        *block(1, 32, True), *block(32, 64, True), *block(64, 128, False),
        nn.Flatten(), nn.Linear(6272, 256), nn.ReLU(), nn.Dropout(0.25), nn.Linear(256, 10),
    )
