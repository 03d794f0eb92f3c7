"""nn: modules vs torch.nn with copied weights, default init, state dicts, repr, dtypes."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import autograd, nn

DOCS = Path(__file__).resolve().parent.parent / "docs" / "nn.md"


def _torch():
    return pytest.importorskip("torch")


def _copy_weights(ours: nn.Module, theirs) -> None:
    """Load torch's state dict into ours (same names: that is part of the test)."""
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _compare_module(ours, theirs, x: np.ndarray, atol=1e-10):
    """Outputs, input gradients and parameter gradients for a random upstream gradient."""
    torch = _torch()
    rng = np.random.default_rng(1)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    g = rng.standard_normal(tuple(yt.shape))
    (yt * torch.tensor(g)).sum().backward()
    xo = tg.Tensor(x, requires_grad=True)
    yo = ours(xo)
    yo.backward(tg.Tensor(g))
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), atol=atol, rtol=1e-7)
    np.testing.assert_allclose(xo.grad.data, xt.grad.numpy(), atol=atol, rtol=1e-7)
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.data, theirs_grads[name].grad.numpy(), atol=atol, rtol=1e-7, err_msg=name
        )


# ----------------------------------------------------------------------------- vs torch


def test_linear_matches_torch():
    torch = _torch()
    tl = torch.nn.Linear(5, 3).double()
    ours = nn.Linear(5, 3, dtype="float64")
    _copy_weights(ours, tl)
    _compare_module(ours, tl, np.random.default_rng(0).standard_normal((4, 5)))


def test_mlp_sequential_matches_torch_with_same_names():
    torch = _torch()
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 8, bias=False),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(8, 4),
        torch.nn.GELU(),
        torch.nn.Linear(4, 3),
        torch.nn.Sigmoid(),
        torch.nn.Softmax(dim=1),
    ).double()
    ours = nn.Sequential(
        nn.Linear(6, 8),
        nn.Tanh(),
        nn.Linear(8, 8, bias=False),
        nn.LeakyReLU(0.2),
        nn.Linear(8, 4),
        nn.GELU(),
        nn.Linear(4, 3),
        nn.Sigmoid(),
        nn.Softmax(dim=1),
    ).double()
    assert list(ours.state_dict()) == list(tm.state_dict())
    _copy_weights(ours, tm)
    _compare_module(ours, tm, np.random.default_rng(0).standard_normal((5, 6)))


@pytest.mark.parametrize(
    "cls, shape",
    [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (3, 3, 4, 5))],
)
def test_batchnorm_train_and_eval_match_torch(cls, shape):
    torch = _torch()
    tb = getattr(torch.nn, cls)(3, momentum=0.3).double()
    ours = getattr(nn, cls)(3, momentum=0.3).double()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(rng.uniform(0.5, 2, 3)))
        tb.bias.copy_(torch.tensor(rng.standard_normal(3)))
    _copy_weights(ours, tb)
    for step in range(3):  # training: batch statistics, running stats updated each call
        x = rng.standard_normal(shape) * 2 + 1
        for p in ours.parameters():
            p.grad = None
        tb.zero_grad()
        _compare_module(ours, tb, x)
        for k, v in tb.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-10, err_msg=k)
        assert int(ours.num_batches_tracked.item()) == step + 1
    ours.eval()
    tb.eval()
    for p in ours.parameters():
        p.grad = None
    tb.zero_grad()
    _compare_module(ours, tb, rng.standard_normal(shape))
    assert int(ours.num_batches_tracked.item()) == 3  # eval does not count


def test_batchnorm_cumulative_average_and_no_running_stats():
    torch = _torch()
    rng = np.random.default_rng(3)
    tb = torch.nn.BatchNorm1d(4, momentum=None).double()
    ours = nn.BatchNorm1d(4, momentum=None).double()
    for _ in range(3):
        x = rng.standard_normal((5, 4))
        tb(torch.tensor(x))
        ours(tg.Tensor(x))
    for k, v in tb.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-12, err_msg=k)
    plain = nn.BatchNorm2d(2, affine=False, track_running_stats=False)
    assert list(plain.state_dict()) == [] and list(plain.parameters()) == []
    x = rng.standard_normal((2, 2, 3, 3))
    plain.eval()  # no running stats: batch statistics even in eval, as PyTorch
    ref = torch.nn.BatchNorm2d(2, affine=False, track_running_stats=False).double().eval()
    np.testing.assert_allclose(plain(tg.Tensor(x)).data, ref(torch.tensor(x)).numpy(), atol=1e-6)


def test_f_batch_norm_gradcheck_training():
    x = tg.Tensor(np.random.default_rng(0).standard_normal((4, 3, 2)), requires_grad=True)
    w = tg.Tensor(np.random.default_rng(1).uniform(0.5, 2, 3), requires_grad=True)
    b = tg.Tensor(np.random.default_rng(2).standard_normal(3), requires_grad=True)
    assert tg.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))
    assert tg.gradgradcheck(lambda x: F.batch_norm(x, None, None, training=True), (x,))


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_f_batch_norm_training_against_torch_on_threads_and_chunks(affine, monkeypatch):
    """The fused op (weight and bias, or neither; one of the two: composed ops) on a
    shape that 2 threads split and one thread takes in chunks, float32 and float64:
    values, running stats and gradients against PyTorch, the same bits when run again,
    and the recorded (create_graph) VJP agrees and differentiates again."""
    torch = _torch()
    from tinygrad_np.ops import norm

    monkeypatch.setattr(norm, "BN_CHUNK_BYTES", 5 * 7 * 6 * 8 * 2)  # chunks of 2 samples
    monkeypatch.setattr(tg._parallel, "MIN_ELEMENTS", 1)  # split even this small
    before = tg.get_num_threads()
    try:
        _batch_norm_against_torch(affine, torch)
    finally:
        tg.set_num_threads(before)


def _batch_norm_against_torch(affine: str, torch) -> None:
    rng = np.random.default_rng(7)
    for dt in (np.float64, np.float32):
        x = (rng.standard_normal((9, 5, 7, 6)) * 3 + 4).astype(dt)
        g = rng.standard_normal(x.shape).astype(dt)
        w = rng.uniform(0.5, 2, 5).astype(dt) if affine != "none" else None
        b = rng.standard_normal(5).astype(dt) if affine == "both" else None
        got = []
        for threads in (1, 1, 2, 2):
            tg.set_num_threads(threads)
            rm, rv = np.zeros(5, dt), np.ones(5, dt)
            ins = [tg.Tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
            wt = ins[1] if w is not None else None
            bt = ins[2] if b is not None else None
            y = F.batch_norm(ins[0], rm, rv, wt, bt, training=True, momentum=0.3)
            grads = tg.grad(y, ins, [tg.Tensor(g)])
            got.append([y.data, rm, rv] + [t.data for t in grads])
        for one, again, two, two_again in zip(*got, strict=True):
            assert np.array_equal(one, again) and np.array_equal(two, two_again)
            np.testing.assert_allclose(one, two, rtol=1e-5 if dt == np.float32 else 1e-12)
        tins = [torch.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
        trm = torch.zeros(5, dtype=tins[0].dtype)
        trv = torch.ones(5, dtype=tins[0].dtype)
        ty = torch.nn.functional.batch_norm(
            tins[0], trm, trv, tins[1] if w is not None else None,
            tins[2] if b is not None else None, training=True, momentum=0.3,
        )  # fmt: skip
        tgrads = torch.autograd.grad(ty, tins, torch.tensor(g))
        tol = 1e-10 if dt == np.float64 else 1e-5
        want = [ty.detach().numpy(), trm.numpy(), trv.numpy()] + [t.numpy() for t in tgrads]
        for a, r in zip(got[0], want, strict=True):
            assert a.dtype == dt
            np.testing.assert_allclose(a, r, rtol=tol, atol=tol)
        if dt == np.float64:  # the recorded VJP: the same gradient, differentiable again
            ins = [tg.Tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
            y = F.batch_norm(ins[0], None, None, *(ins[1:] + [None] * (3 - len(ins))),
                             training=True)  # fmt: skip
            rec = tg.grad(y, ins, [tg.Tensor(g)], create_graph=True)
            for a, c in zip(rec, got[0][3:], strict=True):
                np.testing.assert_allclose(a.data, c, rtol=1e-10, atol=1e-12)
            (hx,) = tg.grad((rec[0] * rec[0]).sum(), [ins[0]])
            th = [torch.tensor(a, requires_grad=True) for a in (x, w, b) if a is not None]
            ty = torch.nn.functional.batch_norm(
                th[0], None, None, *(th[1:] + [None] * (3 - len(th))), training=True
            )
            (tgx,) = torch.autograd.grad(ty, [th[0]], torch.tensor(g), create_graph=True)
            (thx,) = torch.autograd.grad((tgx * tgx).sum(), [th[0]])
            np.testing.assert_allclose(hx.data, thx.numpy(), rtol=1e-8, atol=1e-10)


def test_f_batch_norm_updates_running_arrays_in_place_like_torch():
    torch = _torch()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 4))
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y = F.batch_norm(tg.Tensor(x), rm, rv, training=True, momentum=0.2, eps=1e-3)
    ref = torch.nn.functional.batch_norm(
        torch.tensor(x), trm, trv, training=True, momentum=0.2, eps=1e-3
    )
    np.testing.assert_allclose(y.data, ref.numpy(), atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)  # unbiased variance
    y = F.batch_norm(tg.Tensor(x), rm, rv, training=False, eps=1e-3)
    ref = torch.nn.functional.batch_norm(torch.tensor(x), trm, trv, training=False, eps=1e-3)
    np.testing.assert_allclose(y.data, ref.numpy(), atol=1e-12)


def test_f_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tg.ones(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(tg.ones(2, 3), np.zeros(4), np.ones(3))
    with pytest.raises(ValueError, match="expected 3 channels"):
        nn.BatchNorm1d(3)(tg.ones(2, 4))
    with pytest.raises(ValueError, match="4-dim"):
        nn.BatchNorm2d(3)(tg.ones(2, 3))


def test_dropout_train_and_eval():
    tg.manual_seed(0)
    d = nn.Dropout(0.25)
    x = tg.ones(200, 50, dtype="float64")
    y = d(x).data
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)  # eval: identity, as torch's
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)


def test_losses_match_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4))
    target = rng.integers(0, 4, 6)
    ours = nn.CrossEntropyLoss(label_smoothing=0.1)(tg.Tensor(logits), target)
    ref = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.tensor(logits), torch.tensor(target))
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    ours = nn.MSELoss(reduction="sum")(tg.Tensor(a), tg.Tensor(b))
    assert ours.item() == pytest.approx(((a - b) ** 2).sum(), rel=1e-12)


def test_flatten_and_softmax_default_dim():
    x = tg.randn(2, 3, 4, 5)
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Flatten(start_dim=2)(x).shape == (2, 3, 20)
    with pytest.warns(UserWarning, match="softmax without dim: took dim 1"):
        s = nn.Softmax()(tg.randn(2, 3))  # legacy dim=None: dim 1 for 2-d input
    np.testing.assert_allclose(s.data.sum(axis=1), 1, rtol=1e-6)


# ----------------------------------------------------------------------------- conv / pool


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(stride=2, padding=1),
        dict(padding=1, dilation=2, groups=2),
        dict(stride=(2, 1), padding=(0, 1), bias=False),
    ],
)
def test_conv2d_matches_torch(kw):
    torch = _torch()
    tc = torch.nn.Conv2d(4, 6, 3, **kw).double()
    ours = nn.Conv2d(4, 6, 3, **kw).double()
    _copy_weights(ours, tc)
    _compare_module(ours, tc, np.random.default_rng(0).standard_normal((2, 4, 7, 8)))


def test_conv1d_conv3d_convtranspose2d_match_torch():
    torch = _torch()
    rng = np.random.default_rng(0)
    cases = [
        ("conv1d", nn.Conv1d(3, 4, 3, stride=2, padding=1), torch.nn.Conv1d(3, 4, 3, 2, 1),
         (2, 3, 9)),
        ("conv3d", nn.Conv3d(2, 3, 2, padding=1), torch.nn.Conv3d(2, 3, 2, padding=1),
         (1, 2, 3, 4, 3)),
        (
            "conv_transpose2d",
            nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
            torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
            (2, 4, 3, 4),
        ),
    ]  # fmt: skip
    for _name, ours, theirs, shape in cases:
        theirs = theirs.double()
        ours.double()
        _copy_weights(ours, theirs)
        _compare_module(ours, theirs, rng.standard_normal(shape))


def test_pooling_matches_torch():
    torch = _torch()
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    pairs = [
        (nn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        (nn.MaxPool2d(3, stride=2, padding=1), torch.nn.MaxPool2d(3, stride=2, padding=1)),
        (nn.AvgPool2d(2, stride=1), torch.nn.AvgPool2d(2, stride=1)),
        (
            nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
            torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
        ),
    ]
    for ours, theirs in pairs:
        _compare_module(ours, theirs, x)


def test_lenet_state_dict_names_and_forward_match_torch():
    torch = _torch()

    def build(m):
        return m.Sequential(
            m.Conv2d(1, 6, 5, padding=2),
            m.ReLU(),
            m.MaxPool2d(2),
            m.Conv2d(6, 16, 5),
            m.BatchNorm2d(16),
            m.ReLU(),
            m.AvgPool2d(2),
            m.Flatten(),
            m.Linear(16 * 5 * 5, 10),
        )

    tm, ours = build(torch.nn).double(), build(nn).double()
    assert list(ours.state_dict()) == list(tm.state_dict())
    _copy_weights(ours, tm)
    _compare_module(ours, tm, np.random.default_rng(0).standard_normal((3, 1, 28, 28)), atol=1e-9)


def test_conv_constructor_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(3, 4, (3, 3, 3))
    with pytest.raises(NotImplementedError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda: nn.Linear(50, 40), 50),
        (lambda: nn.Conv2d(6, 8, 3), 6 * 9),
        (lambda: nn.Conv2d(6, 8, (3, 5), groups=2), 3 * 15),
        (lambda: nn.Conv1d(4, 8, 5), 20),
        (lambda: nn.Conv3d(2, 4, 3), 54),
        (lambda: nn.ConvTranspose2d(6, 8, 3, groups=2), 4 * 9),  # dim 1 of (in, out/g, k, k)
    ],
)
def test_default_init_bounds_follow_fan_in(make, fan_in):
    tg.manual_seed(0)
    m = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the bias rule agree
    w, b = m.weight.data, m.bias.data
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # uniform on [-bound, bound]: the extremes come close, std is bound / sqrt(3)
    assert np.abs(w).max() > 0.9 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.2)


def test_default_init_is_seeded_and_matches_torch_shapes():
    torch = _torch()
    tg.manual_seed(5)
    a = nn.Conv2d(3, 4, 3).state_dict()
    tg.manual_seed(5)
    b = nn.Conv2d(3, 4, 3).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    ct = torch.nn.ConvTranspose2d(6, 8, 3, groups=2)
    assert nn.ConvTranspose2d(6, 8, 3, groups=2).weight.shape == tuple(ct.weight.shape)
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.data, 1)
    np.testing.assert_array_equal(bn.bias.data, 0)
    np.testing.assert_array_equal(bn.running_var.data, 1)
    assert bn.num_batches_tracked.dtype == np.int64


# ----------------------------------------------------------------------------- Module


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.register_buffer("step", tg.zeros(1))
        self.note = "not a parameter"

    def forward(self, x):
        return self.head(self.features(x).relu()) * self.scale


def test_named_parameters_children_modules_buffers():
    m = Block()
    names = [n for n, _ in m.named_parameters()]
    assert names == [
        "scale",
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "head.weight",
        "head.bias",
    ]
    assert [id(p) for p in m.parameters()] == [id(p) for _, p in m.named_parameters()]
    assert [type(c).__name__ for c in m.children()] == ["Sequential", "Linear"]
    assert [n for n, _ in m.named_modules()] == ["", "features", "features.0", "features.1", "head"]
    assert len(list(m.modules())) == 5
    assert [n for n, _ in m.named_buffers()] == [
        "step",
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]
    assert list(m.state_dict())[:2] == ["scale", "step"]
    assert m.note == "not a parameter"
    assert all(p.requires_grad for p in m.parameters())


def test_shared_parameter_listed_once_and_reassignment():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as torch
    m = nn.Linear(2, 2)
    m.bias = None
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    with pytest.raises(TypeError, match="Parameter"):
        m.weight = tg.ones(2, 2)
    del m.weight
    assert list(m.parameters()) == []


def test_module_without_super_init_has_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Bad()


def test_train_eval_and_zero_grad():
    m = Block()
    assert m.training and m.features[1].training
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m(tg.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_call_pushes_scope_and_restores_it():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(autograd._state.scope)
            return x * 2

    inner = Probe()
    outer = nn.Sequential(nn.Linear(2, 2), inner)
    x = tg.randn(1, 2, requires_grad=True)
    y = outer(x)
    assert seen == [(outer, inner)]
    assert autograd._state.scope == ()
    assert y.grad_fn.scope == (outer, inner)  # the op made inside Probe records its modules

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        nn.Sequential(Boom())(x)
    assert autograd._state.scope == ()


def test_sequential_indexing_len_iteration():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3
    assert isinstance(seq[-1], nn.Linear) and seq[-1] is seq[2]
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0]
    assert head(tg.randn(4, 2)).shape == (4, 3)
    with pytest.raises(IndexError):
        seq[3]
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and list(seq.state_dict())[-1] == "2.bias"


def test_repr_like_torch():
    torch = _torch()

    def build(m):
        return m.Sequential(
            m.Conv2d(1, 6, 5, padding=2),
            m.ReLU(),
            m.MaxPool2d(2),
            m.Sequential(m.Linear(4, 3, bias=False), m.BatchNorm1d(3), m.Dropout(0.1)),
            m.Flatten(),
            m.LeakyReLU(0.2),
            m.GELU(),
            m.Softmax(dim=1),
        )

    assert repr(build(nn)) == repr(build(torch.nn))
    assert repr(nn.Conv2d(2, 4, 3, stride=2, groups=2, bias=False)) == repr(
        torch.nn.Conv2d(2, 4, 3, stride=2, groups=2, bias=False)
    )
    assert repr(nn.Linear(2, 3)) == "Linear(in_features=2, out_features=3, bias=True)"


def test_state_dict_is_a_copy_and_load_roundtrip():
    tg.manual_seed(0)
    a, b = Block(), Block()
    a(tg.randn(5, 3))  # moves running stats
    sd = a.state_dict()
    sd["head.weight"][...] = 7  # a copy: the model is unchanged
    assert not np.any(a.head.weight.data == 7)
    w_before = b.head.weight
    b.load_state_dict(a.state_dict())
    assert b.head.weight is w_before  # loaded in place
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    b.load_state_dict({k: tg.Tensor(v) for k, v in a.state_dict().items()})  # Tensors too


def test_load_state_dict_strict_errors():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    sd = m.state_dict()
    del sd["1.running_var"]
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError) as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys: '1.running_var'" in msg and "unexpected keys: 'extra.weight'" in msg
    before = m[0].weight.data.copy()
    sd["0.weight"] = np.ones((2, 3), dtype=np.float32) * 5
    res = m.load_state_dict({k: v for k, v in sd.items() if k != "0.weight"}, strict=False)
    assert res.missing_keys == ["0.weight", "1.running_var"]
    assert res.unexpected_keys == ["extra.weight"]
    with pytest.raises(ValueError, match=re.escape("'0.weight' has shape (2, 3)")) as e:
        m.load_state_dict(sd, strict=False)
    assert "(3, 2) in the model" in str(e.value)
    np.testing.assert_array_equal(m[0].weight.data, before)  # nothing was changed


def test_load_state_dict_refuses_non_numeric_values_before_changing_anything():
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    before = [p.data.copy() for p in m.parameters()]
    for bad in (np.array(["a", "b"]), np.array([None, None], dtype=object), np.ones(2) * 1j):
        sd = m.state_dict()
        sd["0.weight"] = np.full((2, 2), 9.0, dtype=np.float32)  # (a good key first)
        sd["1.bias"] = bad
        with pytest.raises(TypeError, match=re.escape(f"'1.bias' has dtype {bad.dtype}")):
            m.load_state_dict(sd)
        for p, b in zip(m.parameters(), before, strict=True):
            np.testing.assert_array_equal(p.data, b)
    sd = m.state_dict()
    sd["1.bias"] = np.array([1, 0])  # integers and bools are cast, as before
    m.load_state_dict(sd)
    assert m[1].bias.dtype == np.float32 and m[1].bias.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("register", ["add_module", "register_parameter", "register_buffer"])
def test_names_that_state_dict_could_not_tell_apart_are_refused(register):
    value = {
        "add_module": lambda: nn.Linear(1, 1),
        "register_parameter": lambda: nn.Parameter(np.ones(1, np.float32)),
        "register_buffer": lambda: tg.zeros(1),
    }[register]
    m = nn.Module()
    for name in ("a.b", ""):
        with pytest.raises(KeyError, match="without '.'"):
            getattr(m, register)(name, value())
    with pytest.raises(TypeError, match="must be a str, got int"):
        getattr(m, register)(3, value())
    with pytest.raises(KeyError, match="without '.'"):  # (it goes through add_module)
        nn.Sequential(OrderedDict([("a", nn.Linear(1, 1)), ("a.b", nn.Linear(1, 1))]))
    m.training_steps = 0  # a plain attribute: no parameter or module may shadow it
    with pytest.raises(KeyError, match="'training_steps' already exists"):
        getattr(m, register)("training_steps", value())
    getattr(m, register)("ok", value())
    assert "ok" in dict(m.named_modules() if register == "add_module" else m.state_dict())


def test_double_float_to_convert_parameters_and_buffers():
    m = Block()
    params = list(m.parameters())
    assert m.double() is m
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.features[1].running_mean.dtype == np.float64
    assert m.step.dtype == np.float64
    assert m.features[1].num_batches_tracked.dtype == np.int64  # integers stay
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]  # same objects
    y = m(tg.randn(4, 3, dtype="float64"))
    assert y.dtype == np.float64
    y.sum().backward()
    m.to("float32")
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in m.parameters())
    m.float()
    assert m.head.weight.dtype == np.float32
    with pytest.raises(TypeError, match="floating-point"):
        m.to("int32")


def test_parameter_is_a_tensor_requiring_grad():
    p = nn.Parameter(tg.ones(2, 3))
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.is_leaf
    assert p.shape == (2, 3) and p.dtype == np.float32
    assert repr(p).startswith("Parameter containing:")
    q = nn.Parameter(np.zeros(2), requires_grad=False)
    assert not q.requires_grad and q.dtype == np.float64


def test_mlp_trains_and_loss_drops():
    tg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Linear(32, 2))
    loss_fn = nn.CrossEntropyLoss()
    lr = 0.1
    first = None
    for _ in range(150):
        loss = loss_fn(model(tg.Tensor(x)), y)
        model.zero_grad()
        loss.backward()
        with tg.no_grad():
            for p in model.parameters():
                p.data -= lr * p.grad.data
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


# ----------------------------------------------------------------------------- docs


def test_docs_nn_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks
    ns: dict = {}
    for block in blocks:  # the blocks of one page build on each other
        exec(compile(block, str(DOCS), "exec"), ns)


def test_reassigned_members_keep_their_place_as_in_torch():
    torch = _torch()
    s = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    s[0] = nn.Linear(1, 2)
    assert [n for n, _ in s.named_children()] == ["0", "1", "2"]
    assert s(tg.ones(1, 1)).shape == (1, 3)
    lin = nn.Linear(2, 3)
    lin.weight = nn.Parameter(lin.weight.detach())
    tlin = torch.nn.Linear(2, 3)
    tlin.weight = torch.nn.Parameter(tlin.weight.detach())
    assert list(lin.state_dict()) == list(tlin.state_dict()) == ["weight", "bias"]

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(1, 1), nn.Linear(1, 1)

    class TorchTwo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)

    two, ttwo = Two(), TorchTwo()
    two.a, ttwo.a = nn.Linear(1, 1), torch.nn.Linear(1, 1)
    for m, zeros, ones in ((two, tg.zeros(1), tg.ones(1)), (ttwo, torch.zeros(1), torch.ones(1))):
        m.register_buffer("stat", zeros)
        m.register_buffer("other", zeros)
        m.register_buffer("stat", ones, persistent=False)
        m.register_buffer("stat", ones)
    assert list(two.state_dict()) == list(ttwo.state_dict())
    assert list(two.state_dict())[:2] == ["stat", "other"]  # its own buffers, then children


def test_sequential_delete_renumbers_and_append_adds():
    s = nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 2), nn.Linear(2, 3))
    del s[0]
    s.append(nn.Linear(3, 4))
    assert [n for n, _ in s.named_children()] == ["0", "1", "2"] and len(s) == 3
    assert s(tg.ones(5, 1)).shape == (5, 4)
    del s[1:]
    assert [n for n, _ in s.named_children()] == ["0"]


def test_train_goes_through_each_childs_own_train():
    class FrozenBN(nn.BatchNorm1d):
        def train(self, mode=True):
            return super().train(False)

    net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(FrozenBN(2), nn.Dropout(0.5)))
    net.train()
    assert net.training and net[0].training and not net[1][0].training
    assert net[1][1].training
    net.eval()
    assert not any(m.training for m in net.modules())


def test_batch_norm_refuses_mixed_dtypes_as_linear_and_conv_do():
    """float64 input through float32 parameters or statistics: a ValueError naming the
    argument, as F.linear and F.conv2d give (API.md) and PyTorch ("mixed dtype"); it used
    to promote silently to float64. The graph drawing shows no private argument."""
    x = tg.Tensor(np.random.default_rng(0).standard_normal((2, 3, 4, 4)), requires_grad=True)
    for training in (True, False):
        bn = nn.BatchNorm2d(3).train(training)
        with pytest.raises(ValueError, match="input is float64 but weight is float32"):
            bn(x)
    with pytest.raises(ValueError, match="but running_mean is float64"):
        F.batch_norm(x.float(), np.zeros(3), np.ones(3, np.float32))
    y = nn.BatchNorm2d(3).double()(x)  # (matching dtypes: fine)
    y.sum().backward()
    assert y.dtype == np.float64 and x.grad.dtype == np.float64
    fused = nn.BatchNorm2d(3)(tg.randn(2, 3, 4, 4, requires_grad=True))
    assert type(fused.grad_fn).__name__ == "BatchNormTrain"
    from tinygrad_np import viz

    assert "stats" not in str(viz.to_dot(fused.sum()))


def test_attribute_assignment_refuses_dotted_names_as_register_does():
    m = nn.Sequential(OrderedDict([("a", nn.Linear(2, 2))]))
    with pytest.raises(KeyError, match="without '.'"):
        setattr(m, "a.bias", nn.Parameter(np.zeros(2, np.float32)))
    with pytest.raises(KeyError, match="without '.'"):
        setattr(m, "a.sub", nn.Linear(1, 1))
    assert list(m.state_dict()) == ["a.weight", "a.bias"]


def test_pytorchs_device_spellings_are_accepted_and_others_refused():
    """device='cpu' on the layers, Module.to's forms and .cpu(), as PyTorch code writes
    them (an API hunt found each raising TypeError); a GPU device names the argument."""
    torch = pytest.importorskip("torch")
    for make in (lambda **k: nn.Linear(3, 4, **k), lambda **k: nn.Conv2d(2, 4, 3, **k),
                 lambda **k: nn.ConvTranspose2d(2, 4, 3, **k),
                 lambda **k: nn.BatchNorm2d(3, **k)):  # fmt: skip
        for device in ("cpu", "cpu:0", torch.device("cpu"), None):
            make(device=device)
        with pytest.raises(ValueError, match="device must be 'cpu'"):
            make(device="cuda")
    m = nn.Sequential(nn.Linear(3, 4))
    assert m.cpu() is m and m.to(device="cpu") is m and m[0].weight.dtype == np.float32
    assert m.to("cpu", np.float64) is m and m[0].weight.dtype == np.float64
    m.to("cpu", dtype="float32", non_blocking=False)
    assert m[0].weight.dtype == np.float32
    m.to(tg.zeros(1, dtype="float64"))  # (a tensor's dtype, as PyTorch)
    assert m[0].weight.dtype == np.float64
    with pytest.raises(ValueError, match="device must be 'cpu'"):
        m.to("cuda:0")
    with pytest.raises(TypeError, match="unexpected keyword argument 'copy'"):
        m.to(copy=True)


def test_a_parameter_made_from_a_tensor_shares_its_array_as_pytorch():
    t = tg.zeros(3)
    p = nn.Parameter(t)
    p.grad = tg.ones(3)
    tg.optim.SGD([p], lr=0.5).step()
    assert t.tolist() == [-0.5, -0.5, -0.5] and p.requires_grad and not t.requires_grad
    a = np.zeros(2, np.float32)
    nn.Parameter(a).data += 1  # (an array is copied, as Tensor(array) copies)
    assert a.tolist() == [0.0, 0.0]


def test_conv_transpose_forward_takes_pytorchs_output_size():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ours = nn.ConvTranspose2d(2, 3, (3, 2), stride=(2, 3), padding=1)
    theirs = torch.nn.ConvTranspose2d(2, 3, (3, 2), stride=(2, 3), padding=1)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    for size in ([7, 12], [8, 14], (1, 3, 8, 13), torch.Size([7, 13])):
        y = ours(tg.Tensor(x), output_size=size)
        want = theirs(torch.tensor(x), output_size=size)
        assert y.shape == tuple(want.shape)
        np.testing.assert_allclose(y.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    y = ours(tg.Tensor(x[0]), output_size=[8, 13])  # (unbatched)
    assert y.shape == (3, 8, 13)
    with pytest.raises(ValueError, match=r"dim 1 can be 12 to 14"):
        ours(tg.Tensor(x), output_size=[7, 15])
    with pytest.raises(ValueError, match="output_size must have 2 or 4 elements"):
        ours(tg.Tensor(x), output_size=[7])


def test_containers_have_pytorchs_list_methods():
    torch = pytest.importorskip("torch")

    def build(lib):
        seq = lib.Sequential(lib.Linear(2, 2), lib.ReLU())
        seq.insert(1, lib.Tanh())
        seq.extend([lib.Sigmoid()])
        popped = seq.pop(0)
        seq = seq + lib.Sequential(lib.ReLU())
        seq += lib.Sequential(lib.Tanh())
        ml = lib.ModuleList([lib.ReLU(), lib.Tanh()])
        ml.extend([lib.Sigmoid()])
        ml.insert(2, lib.Linear(1, 1))
        ml[0] = lib.GELU()
        del ml[1]
        ml += [lib.ReLU()]
        out = ml.pop(1)
        return (type(popped).__name__, [type(m).__name__ for m in seq], list(seq._modules),
                [type(m).__name__ for m in ml], list(ml._modules), type(out).__name__)  # fmt: skip

    assert build(nn) == build(torch.nn)
    with pytest.raises(IndexError):
        nn.Sequential(nn.ReLU()).insert(3, nn.Tanh())
    with pytest.raises(TypeError, match="both must be Sequential"):
        nn.Sequential() + [nn.ReLU()]


def test_loss_modules_take_pytorchs_positional_order_and_legacy_keywords():
    torch = pytest.importorskip("torch")
    import warnings

    cases = [((None, None, 2), {}), ((), {"size_average": False}), ((), {"reduce": False}),
             ((), {"reduce": True, "size_average": True}), ((), {"reduction": "sum"}),
             ((None, None, -100, None, "mean", 0.1), {})]  # fmt: skip
    for args, kw in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (PyTorch's deprecation warnings)
            want = torch.nn.CrossEntropyLoss(*args, **kw)
            got = nn.CrossEntropyLoss(*args, **kw)
        assert (got.reduction, got.ignore_index, got.label_smoothing) == (
            want.reduction, want.ignore_index, want.label_smoothing)  # fmt: skip
    for args, kw in [((None, None, "sum"), {}), ((), {"size_average": False}),
                     ((), {"reduce": False})]:  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert nn.MSELoss(*args, **kw).reduction == torch.nn.MSELoss(*args, **kw).reduction
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="average")
    # the reduction or ignore_index in size_average's place (the order before PyTorch's,
    # which PyTorch reads as size_average=True, a mean): refused, not a silent mean
    with pytest.raises(TypeError, match="size_average .* must be a bool or None, got 'sum'"):
        nn.MSELoss("sum")
    with pytest.raises(TypeError, match="got 1"):
        nn.CrossEntropyLoss(None, 1)
    with pytest.warns(UserWarning, match="deprecated"):
        nn.MSELoss(size_average=False)


def test_module_extras_as_pytorch():
    torch = pytest.importorskip("torch")
    assert repr(nn.BatchNorm1d(3, eps=1, momentum=1)) == repr(
        torch.nn.BatchNorm1d(3, eps=1, momentum=1))  # fmt: skip
    assert repr(nn.Dropout(0)) == repr(torch.nn.Dropout(0))
    assert nn.init.calculate_gain("conv_transpose2d") == 1.0
    assert nn.Conv2d(1, 1, 1).transposed is False and nn.ConvTranspose2d(1, 1, 1).transposed
    net = nn.Sequential(OrderedDict([("body", nn.Sequential(nn.Linear(2, 2), nn.ReLU()))]))
    assert net.get_submodule("body.1") is net.body[1] and net.get_submodule("") is net
    with pytest.raises(AttributeError, match="has no sub-module 'head'"):
        net.get_submodule("head.0")
    bn = nn.BatchNorm1d(2)
    bn(tg.randn(4, 2))
    bn.weight.data += 1
    bn.reset_parameters()
    assert bn.running_mean.tolist() == [0, 0] and bn.weight.tolist() == [1, 1]
    assert int(bn.num_batches_tracked.item()) == 0


# ----------------------------------------------------------------------------- hunt findings


@pytest.mark.parametrize("change", ["load_state_dict", "reset_parameters", "init", "bn_reset"])
def test_weights_changed_between_forward_and_backward_raise(change):
    # the backward would mix the new weights with the old activations (a wrong gradient,
    # silently); PyTorch raises, and so does an optimizer step here
    m = nn.Linear(3, 2)
    x = tg.Tensor(np.ones((2, 3), np.float32), requires_grad=True)
    if change == "bn_reset":
        bn = nn.BatchNorm1d(3).eval()
        y = (bn(x) * bn.running_var).sum()  # (a graph that reads a buffer)
        bn.reset_running_stats()
    else:
        y = (m(x) ** 2).sum()
        if change == "load_state_dict":
            m.load_state_dict({"weight": np.full((2, 3), 7, np.float32), "bias": np.zeros(2)})
        elif change == "reset_parameters":
            m.reset_parameters()
        else:
            nn.init.constant_(m.weight, 0.5)
    with pytest.raises(RuntimeError, match="changed in place"):
        y.backward()


def test_eval_batch_norm_gradient_uses_the_statistics_of_its_forward():
    rng = np.random.default_rng(0)
    bn = nn.BatchNorm1d(2).double()
    bn.running_mean.data[...] = [0.5, -1.0]
    bn.running_var.data[...] = [2.0, 0.5]
    x = tg.Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    g = rng.standard_normal((4, 2))
    expected = (g * (x.numpy() - [0.5, -1.0]) / np.sqrt(np.array([2.0, 0.5]) + 1e-5)).sum(0)
    y = bn.eval()(x)
    bn.train()(tg.Tensor(rng.standard_normal((4, 2)) + 5))  # updates the running stats
    y.backward(tg.Tensor(g))
    np.testing.assert_allclose(bn.weight.grad.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("cls", [nn.Sequential, nn.ModuleList])
def test_insert_with_a_negative_index_as_list_insert(cls):
    for index in range(-3, 4):
        layers = [nn.ReLU(), nn.Tanh(), nn.Sigmoid()]
        c = cls(*layers) if cls is nn.Sequential else cls(layers)
        c.insert(index, nn.GELU())
        expected = ["ReLU", "Tanh", "Sigmoid"]
        expected.insert(index, "GELU")
        assert [type(m).__name__ for m in c] == expected, index


@pytest.mark.parametrize("shape", [(5, 0, 4), (5, 3, 0)])
def test_linear_with_zero_features_has_empty_gradients(shape):
    n, fin, fout = shape
    m = nn.Linear(fin, fout)
    x = tg.Tensor(np.ones((n, fin), np.float32), requires_grad=True)
    m(x).sum().backward()
    assert x.grad.shape == (n, fin) and m.weight.grad.shape == (fout, fin)
    np.testing.assert_array_equal(m.bias.grad.numpy(), np.full(fout, n))
    (gw,) = tg.grad(m(x).sum(), [m.weight], create_graph=True)  # (the recorded VJP too)
    assert gw.shape == (fout, fin)


def test_batch_norm_state_without_its_count_loads_keeping_the_count():
    bn = nn.BatchNorm2d(3)
    bn(tg.randn(4, 3, 2, 2))  # one training step: count 1
    sd = {k: v for k, v in nn.BatchNorm2d(3).state_dict().items() if k != "num_batches_tracked"}
    assert bn.load_state_dict(sd) == ([], [])  # (old PyTorch checkpoints have no count)
    assert int(bn.num_batches_tracked.numpy()) == 1
    with pytest.raises(KeyError, match="missing keys: 'running_var'"):
        bn.load_state_dict({k: v for k, v in sd.items() if k != "running_var"})
    shared = nn.BatchNorm1d(2)
    model = nn.Sequential(shared, shared)  # (a shared module under two names)
    sd = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    assert model.load_state_dict(sd) == ([], [])


def test_a_module_cannot_take_a_parameters_place():
    """Assigning a Module where a Parameter is raises, as PyTorch: it silently replaced the
    parameter (the state dict lost 'weight')."""
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight' of Linear: expected nn.Parameter"):
        lin.weight = nn.ReLU()
    assert list(lin.state_dict()) == ["weight", "bias"]
    lin.weight = None  # (None is allowed, as there)
    assert lin.weight is None


def test_conv_modules_take_one_int_sequences_as_pytorch():
    """nn.Conv2d(padding=(1,), stride=(2,)) applies them to every dim, as F.conv2d does."""
    conv = nn.Conv2d(2, 2, 3, stride=(2,), padding=(1,))
    assert conv.stride == (2, 2) and conv.padding == (1, 1)
    assert conv(tg.Tensor(np.zeros((1, 2, 7, 7), np.float32))).shape == (1, 2, 4, 4)
