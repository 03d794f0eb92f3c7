"""What the graph keeps alive between forward and backward: only what each VJP reads (as
PyTorch saves only what its backward needs). Found by a memory hunt: a sum kept its
input, a product with a constant kept the other factor, tanh and friends kept their input
beside their output, and writes through ever new slices grew the version registry."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import autograd
from tinygrad_np.nn import functional as F

torch = pytest.importorskip("torch")

BIG = (256, 256)  # 256 KiB in float32: above the size below which nothing is swapped out


def _freed_before_backward(make_loss) -> tuple[bool, np.ndarray]:
    """Whether the intermediate ``make_loss`` builds from x is freed once only the loss
    holds it, and x's gradient (to check that nothing the VJP needed went missing)."""
    x = tg.Tensor(np.random.default_rng(0).standard_normal(BIG).astype(np.float32),
                  requires_grad=True)  # fmt: skip
    mid, loss = make_loss(x)
    ref = weakref.ref(mid.data)
    del mid
    gc.collect()
    freed = ref() is None
    loss.backward()
    return freed, x.grad.numpy()


@pytest.mark.parametrize(
    "name, make",
    [
        ("sum", lambda x: (m := x * x, m.sum())),
        ("mean", lambda x: (m := x * x, m.mean())),
        ("sum over a dim", lambda x: (m := x * x, m.sum(1).sum())),
        ("times a constant", lambda x: (m := x * x, (m * 3.0).sum())),
        ("divided by a constant", lambda x: (m := x * x, (m / 3.0).sum())),
        ("tanh", lambda x: (m := x * x, m.tanh().sum())),
        ("sigmoid", lambda x: (m := x * x, m.sigmoid().sum())),
        ("exp", lambda x: (m := x * 0.1, m.exp().sum())),
        ("sqrt", lambda x: (m := x * x, m.sqrt().sum())),
        ("softmax", lambda x: (m := x * x, m.softmax(1).max())),
    ],
)
def test_an_input_the_vjp_does_not_read_is_freed_before_backward(name, make):
    freed, grad = _freed_before_backward(make)
    assert freed, name
    x = np.random.default_rng(0).standard_normal(BIG).astype(np.float32)
    want = {  # the gradients, by hand
        "sum": 2 * x, "mean": 2 * x / x.size, "sum over a dim": 2 * x,
        "times a constant": 6 * x, "divided by a constant": 2 * x / 3,
        "tanh": 2 * x * (1 - np.tanh(x * x) ** 2),
        "sigmoid": 2 * x * (s := 1 / (1 + np.exp(-x * x))) * (1 - s),
        "exp": 0.1 * np.exp(0.1 * x), "sqrt": np.sign(x),
    }.get(name)  # fmt: skip
    if want is not None:
        np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)


def test_a_factor_the_other_gradient_reads_is_kept():
    a = tg.Tensor(np.ones(BIG, np.float32), requires_grad=True)
    b = tg.Tensor(np.full(BIG, 2.0, np.float32), requires_grad=True)
    m = a * 1.0  # an intermediate factor
    loss = (m * b).sum()  # b's gradient reads m
    ref = weakref.ref(m.data)
    del m
    gc.collect()
    assert ref() is not None
    loss.backward()
    np.testing.assert_array_equal(b.grad.numpy(), np.ones(BIG))
    # the second derivative through a released input still works (recorded backward)
    x = tg.Tensor(np.linspace(-1, 1, 70_000), requires_grad=True)
    (g,) = tg.grad((x * x).tanh().sum(), [x], create_graph=True)
    (h,) = tg.grad(g.sum(), [x])
    t = np.tanh(x.numpy() ** 2)
    want = 2 * (1 - t * t) - 8 * x.numpy() ** 2 * t * (1 - t * t)
    np.testing.assert_allclose(h.numpy(), want, rtol=1e-9, atol=1e-12)


def test_writes_through_ever_new_slices_keep_the_registry_bounded():
    buf = tg.zeros(1 << 16)
    rng = np.random.default_rng(0)
    for _ in range(5000):
        i = int(rng.integers(0, (1 << 16) - 64))
        view = buf[i : i + 64]
        view += 1.0
    entry = autograd._written[id(autograd._root(buf.data))]
    assert len(entry[1]) <= autograd._MAX_REGIONS
    # a saved tensor on the buffer still sees a later write that reaches it...
    w = tg.Tensor(np.ones(64, np.float32), requires_grad=True)
    part = buf[100:164]
    y = (w * part).sum()
    view = buf[120:130]
    view += 1.0
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()
    # ...and one on another array of its own does not
    other = tg.zeros(64)
    y = (w * other).sum()
    view = buf[0:10]
    view += 1.0
    y.backward()


@pytest.mark.parametrize("pool", ["max_pool2d", "max_pool3d", "avg_pool2d"])
def test_a_padded_max_pools_backward_holds_no_padded_copies(pool):
    # the backward pads the input and scatters into padded buffers a block of samples at a
    # time; a padded copy of the input and a padded gradient, cropped at the end, held
    # three input-sized arrays at once (3x3 s2 on 64x112x112 at batch 32: 359 MiB, 159 now,
    # PyTorch 177)
    import tracemalloc

    shape = (16, 4, 40, 40, 40) if pool == "max_pool3d" else (16, 32, 96, 96)
    x = tg.Tensor(np.random.default_rng(0).standard_normal(shape, dtype=np.float32),
                  requires_grad=True)  # fmt: skip
    y = getattr(F, pool)(x, 3, 2, 1)
    tracemalloc.start()
    try:
        y.sum().backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.7 * x.data.nbytes, peak / x.data.nbytes  # gx and a few blocks
    t = torch.tensor(x.data, requires_grad=True)
    getattr(torch.nn.functional, pool)(t, 3, 2, 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize(
    "name, loss, most",
    [  # most: the peak above the logits, in logits' sizes (PyTorch's: 2.5-3.1)
        ("cross_entropy", lambda x, t: F.cross_entropy(x, t), 2.2),
        ("label smoothing", lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), 2.2),
        ("log_softmax + nll_loss", lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), 3.2),
        ("softmax", lambda x, t: (F.softmax(x, 1) * 2).sum(), 3.2),
        ("softmax on dim 0", lambda x, t: (F.softmax(x, 0) * 2).sum(), 3.2),
    ],
)
def test_softmax_losses_hold_no_extra_copies_of_the_logits(name, loss, most):
    # the one-hot targets (and with label smoothing their smoothed copy) were the logits'
    # size and held from the forward on; softmax's forward and backward made a temporary
    # per step (cross_entropy with label smoothing on 256 x 50000: 294 MiB, now 98;
    # PyTorch 155)
    import tracemalloc

    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((256, 8192), dtype=np.float32), requires_grad=True)
    t = rng.integers(0, 8192, 256)
    t[::7] = -100  # (ignored rows, for the losses)
    tracemalloc.start()
    try:
        loss(x, t).backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < most * x.data.nbytes, peak / x.data.nbytes
    xt = torch.tensor(x.data, requires_grad=True)
    tf = torch.nn.functional
    want = {
        "cross_entropy": lambda: tf.cross_entropy(xt, torch.tensor(t)),
        "label smoothing": lambda: tf.cross_entropy(xt, torch.tensor(t), label_smoothing=0.1),
        "log_softmax + nll_loss": lambda: tf.nll_loss(tf.log_softmax(xt, 1), torch.tensor(t)),
        "softmax": lambda: (tf.softmax(xt, 1) * 2).sum(),
        "softmax on dim 0": lambda: (tf.softmax(xt, 0) * 2).sum(),
    }[name]
    want().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_loss_makes_no_array_of_squares_and_keeps_no_differences(reduction):
    import tracemalloc

    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((512, 4096), dtype=np.float32), requires_grad=True)
    t = tg.Tensor(rng.standard_normal((512, 4096), dtype=np.float32), requires_grad=True)
    tracemalloc.start()
    try:
        loss = F.mse_loss(x, t, reduction=reduction)
        held = tracemalloc.get_traced_memory()[0]
        loss.backward()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert held < 0.1 * x.data.nbytes  # (x - t is made again in the backward)
    assert peak < 3.2 * x.data.nbytes, peak / x.data.nbytes  # both gradients, one temporary
    xr = torch.tensor(x.data, requires_grad=True)
    tr = torch.tensor(t.data, requires_grad=True)
    want = torch.nn.functional.mse_loss(xr, tr, reduction=reduction)
    want.backward()
    np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), xr.grad.numpy(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), tr.grad.numpy(), rtol=1e-6, atol=1e-12)
