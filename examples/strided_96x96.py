"""A strided convolutional network on 96x96 colour images: Fashion-MNIST scaled up to
96x96x3, eight of its ten classes.

    python examples/strided_96x96.py              # 300 steps, ~1 min: 72.2% on 1000 test images
    python examples/strided_96x96.py --steps 2    # a smoke run
    python examples/strided_96x96.py --synthetic  # random images, when the dataset is missing

Shapes, per image (channels, height, width):

    input                      3 x 96 x 96
    conv 3->40, k4, stride 2  40 x 47 x 47     (96 - 4) // 2 + 1 = 47
    max pool 3, stride 2      40 x 23 x 23
    conv 40->105, k2         105 x 22 x 22
    max pool 4, stride 2     105 x 10 x 10
    conv 105->158, k2        158 x  9 x  9
    conv 158->158, k2        158 x  8 x  8
    conv 158->105, k2        105 x  7 x  7
    max pool 3, stride 2     105 x  3 x  3     -> flatten: 945
    dense 945 -> 945 -> 475 -> 8
"""

import argparse
import time

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, optim
from tinygrad_np.data import DataLoader, load_mnist

CLASSES = 8  # Fashion-MNIST's classes 0..7; bags (8) and ankle boots (9) are left out

model = nn.Sequential(
    nn.Conv2d(3, 40, 4, stride=2),
    nn.ReLU(),
    nn.MaxPool2d(3, stride=2),
    nn.Conv2d(40, 105, 2),
    nn.ReLU(),
    nn.MaxPool2d(4, stride=2),
    nn.Conv2d(105, 158, 2),
    nn.ReLU(),
    nn.Conv2d(158, 158, 2),
    nn.ReLU(),
    nn.Conv2d(158, 105, 2),
    nn.ReLU(),
    nn.MaxPool2d(3, stride=2),
    nn.Flatten(),
    nn.Linear(945, 945),
    nn.ReLU(),
    nn.Linear(945, 475),
    nn.ReLU(),
    nn.Linear(475, CLASSES),
)

# Nearest-neighbour upscaling 28 -> 96: output pixel i reads input pixel i * 28 // 96.
UPSCALE = np.arange(96) * 28 // 96


def to_96x96x3(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> standardised float32 (N, 3, 96, 96), done per batch (memory)."""
    x = images[:, UPSCALE][:, :, UPSCALE]  # (N, 96, 96)
    x = (x.astype(np.float32) / 255 - 0.286) / 0.353
    return np.repeat(x[:, None], 3, axis=1)  # grey -> three equal channels


def get_data(split, synthetic):
    if synthetic:  # class k: a bright bar at rows 2k..2k+3 over noise
        rng = np.random.default_rng(0 if split == "train" else 1)
        labels = rng.integers(0, CLASSES, 512)
        images = rng.integers(0, 60, (512, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 2 : 2 * k + 6, 4:24] = 250
        return images, labels
    images, labels = load_mnist("fashion-mnist", split)
    keep = labels < CLASSES
    return images[keep], labels[keep]


parser = argparse.ArgumentParser(description="Train the 96x96 strided network.")
parser.add_argument("--steps", type=int, default=300, help="training batches")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--test-images", type=int, default=1000, help="test on the first N")
parser.add_argument("--synthetic", action="store_true", help="generated data, no download")
args = parser.parse_args()

tg.manual_seed(0)
train_images, train_labels = get_data("train", args.synthetic)
test_images, test_labels = get_data("test", args.synthetic)
optimizer = optim.Adam(model.parameters(), lr=3e-4)
loader = DataLoader(train_images, train_labels, batch_size=args.batch_size, shuffle=True, seed=0)

step, start = 0, time.perf_counter()
while step < args.steps:  # as many epochs as the steps need
    for images, labels in loader:
        x = tg.Tensor(to_96x96x3(images.numpy()))  # (B, 3, 96, 96)
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % 25 == 0 or step == args.steps:
            rate = step * args.batch_size / (time.perf_counter() - start)
            print(f"step {step:4d}  loss {loss.item():.4f}  {rate:.0f} images/s")
        if step == args.steps:
            break

model.eval()
n = min(args.test_images, len(test_labels))
correct = 0
with tg.no_grad():
    for images, labels in DataLoader(test_images[:n], test_labels[:n], batch_size=100):
        logits = model(tg.Tensor(to_96x96x3(images.numpy())))
        correct += int((logits.numpy().argmax(1) == labels.numpy()).sum())
print(f"test accuracy on {n} images: {correct / n:.2%}")
