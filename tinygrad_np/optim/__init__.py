"""Optimizers and learning-rate schedulers, PyTorch's names and update rules.

>>> import tinygrad_np as tg
>>> from tinygrad_np import optim
>>> w = tg.Tensor([1.0, -2.0], requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1)
>>> (w * w).sum().backward()
>>> opt.step()
>>> w.tolist()
[0.800000011920929, -1.600000023841858]
"""

from tinygrad_np.optim import lr_scheduler
from tinygrad_np.optim.optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
