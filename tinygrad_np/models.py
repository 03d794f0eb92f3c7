"""Ready-made models for 28x28 grey images (MNIST, Fashion-MNIST): LeNet-5 and an MLP.

Parameter names follow the attribute layout, as in PyTorch: ``features.0.weight`` is the
first convolution's kernel, ``classifier.4.bias`` the last layer's bias.

>>> import tinygrad_np as tg
>>> tg.manual_seed(0)
>>> net = LeNet5()
>>> net(tg.zeros(2, 1, 28, 28)).shape
(2, 10)
>>> [name for name, _ in net.named_parameters()][:2]
['features.0.weight', 'features.0.bias']
"""

from __future__ import annotations

from tinygrad_np import nn
from tinygrad_np.tensor import Tensor

__all__ = ["MODELS", "LeNet5", "MLP", "build_model"]


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling.

    (N, 1, 28, 28) -> conv 1->6 5x5 pad 2 -> relu -> maxpool 2 -> (N, 6, 14, 14)
    -> conv 6->16 5x5 -> relu -> maxpool 2 -> (N, 16, 5, 5) -> flatten (N, 400)
    -> linear 400->120 -> relu -> linear 120->84 -> relu -> linear 84->10 logits.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)  # (N, 16, 5, 5)
        return self.classifier(x.flatten(1))  # (N, 400) -> (N, 10)


class MLP(nn.Module):
    """(N, 1, 28, 28) -> flatten (N, 784) -> linear 784->256 -> relu -> linear 256->10."""

    def __init__(self, hidden: int = 256, num_classes: int = 10):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(28 * 28, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x.flatten(1))


MODELS = {"lenet": LeNet5, "mlp": MLP}


def build_model(name: str) -> nn.Module:
    """A freshly initialised model by its command-line name (``"lenet"`` or ``"mlp"``)."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name]()
