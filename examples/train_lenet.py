"""Train LeNet-5 on Fashion-MNIST with a plain loop: forward, loss, backward, step.

    python examples/train_lenet.py              # one epoch: 85.0% test accuracy (measured)
    python examples/train_lenet.py --steps 20   # a smoke run
    python examples/train_lenet.py --synthetic  # random images, when the dataset is missing

The data comes from Debian's dataset-fashion-mnist, $TINYGRAD_NP_DATA or a download.
"""

import argparse
import time

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, optim
from tinygrad_np.data import DataLoader, load_mnist


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)  # (N, 1, 28, 28) -> (N, 6, 28, 28)
        self.conv2 = nn.Conv2d(6, 16, 5)  # (N, 6, 14, 14) -> (N, 16, 10, 10)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x).relu(), 2)  # (N, 6, 14, 14)
        x = F.max_pool2d(self.conv2(x).relu(), 2)  # (N, 16, 5, 5)
        x = x.flatten(1)  # (N, 400)
        return self.fc3(self.fc2(self.fc1(x).relu()).relu())  # (N, 10) logits


def get_data(split, synthetic):
    if synthetic:  # class k: a bright bar at rows 2k..2k+3 over noise
        rng = np.random.default_rng(0 if split == "train" else 1)
        labels = rng.integers(0, 10, 2000)
        images = rng.integers(0, 60, (2000, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 2 : 2 * k + 6, 4:24] = 250
    else:
        images, labels = load_mnist("fashion-mnist", split)
    x = (images.astype(np.float32) / 255 - 0.286) / 0.353  # standardise
    return x[:, None], labels  # (N, 1, 28, 28), (N,)


parser = argparse.ArgumentParser(description="Train LeNet-5 with an explicit loop.")
parser.add_argument("--steps", type=int, default=0, help="stop after N batches (0: one epoch)")
parser.add_argument("--synthetic", action="store_true", help="generated data, no download")
args = parser.parse_args()

tg.manual_seed(0)
x_train, y_train = get_data("train", args.synthetic)
x_test, y_test = get_data("test", args.synthetic)
model = LeNet5()
optimizer = optim.Adam(model.parameters(), lr=1e-3)
loader = DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=0)

start = time.perf_counter()
for step, (xb, yb) in enumerate(loader, start=1):
    loss = F.cross_entropy(model(xb), yb)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 100 == 0 or step == args.steps:
        rate = step * 64 / (time.perf_counter() - start)
        print(f"step {step:4d}  loss {loss.item():.4f}  {rate:.0f} images/s")
    if step == args.steps:
        break

model.eval()
with tg.no_grad():
    correct = sum(
        int((model(xb).numpy().argmax(1) == yb.numpy()).sum())
        for xb, yb in DataLoader(x_test, y_test, batch_size=1000)
    )
print(f"test accuracy: {correct / len(y_test):.2%}")
