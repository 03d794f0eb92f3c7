"""Draw the graphs of the docs: LeNet-5's forward pass, a strided convolution's backward
pass, and a 20-layer MLP folded into one node per repeated block.

    python examples/draw_graph.py                 # writes docs/img/*.svg
    python examples/draw_graph.py --out /tmp/pics

Needs Graphviz's ``dot`` (apt install graphviz, brew install graphviz, conda install graphviz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, viz
from tinygrad_np.models import LeNet5


def lenet_forward(out: Path) -> Path:
    net = LeNet5()
    x = tg.randn(1, 1, 28, 28)
    return viz.draw_graph(net(x), path=out / "lenet_forward.svg", title="LeNet-5, forward")


def conv_backward(out: Path) -> Path:
    # y = conv2d(x, w, stride=2, padding=1): 6x6 -> 3x3. Its input gradient is the
    # upstream gradient dilated by the stride, padded, and correlated with the flipped kernel.
    x = tg.randn(1, 1, 6, 6, requires_grad=True)
    x.name = "x"
    w = tg.randn(1, 1, 3, 3, requires_grad=True)
    w.name = "w"
    y = F.conv2d(x, w, stride=2, padding=1)
    return viz.draw_backward(
        y,
        [x, w],
        path=out / "conv_backward.svg",
        title="backward of conv2d(x, w, stride=2, padding=1)",
    )


def deep_mlp_collapsed(out: Path) -> Path:
    layers = [nn.Linear(64, 32), nn.ReLU()]
    for _ in range(19):
        layers += [nn.Linear(32, 32), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(32, 10))
    y = net(tg.randn(8, 64))
    return viz.draw_graph(
        y, path=out / "mlp20_collapsed.svg", collapse=True, title="20-layer MLP, collapse=True"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[1] / "docs" / "img"
    parser.add_argument("--out", type=Path, default=default, help="folder for the SVGs")
    parser.add_argument("--steps", type=int, default=0, help="ignored (smoke-run convention)")
    args = parser.parse_args(argv)
    tg.manual_seed(0)
    for draw in (lenet_forward, conv_backward, deep_mlp_collapsed):
        print(draw(args.out))


if __name__ == "__main__":
    main()
