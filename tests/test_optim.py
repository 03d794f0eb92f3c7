"""optim: parameters after several steps match torch.optim (float64), state dicts, schedulers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import nn, optim
from tinygrad_np.optim.lr_scheduler import CosineAnnealingLR, StepLR

SHAPES = [(3, 4), (4,), (2, 3, 2)]


def _torch():
    return pytest.importorskip("torch")


def _init(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES]


def _grads(step):
    """A fixed, different gradient per step (the same for both frameworks)."""
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s) for s in SHAPES]


def _run_both(make_ours, make_theirs, steps=6, sched=None, groups=None, edit=None):
    """Run both optimizers from the same init with the same gradients; compare every step."""
    torch = _torch()
    init = _init()
    ours = [tg.Tensor(a, requires_grad=True) for a in init]
    theirs = [torch.tensor(a, requires_grad=True) for a in init]
    if groups is None:
        o_opt, t_opt = make_ours(ours), make_theirs(theirs)
    else:
        o_opt = make_ours([dict(g, params=[ours[i] for i in g["params"]]) for g in groups])
        t_opt = make_theirs([dict(g, params=[theirs[i] for i in g["params"]]) for g in groups])
    o_sched = t_sched = None
    if sched is not None:
        o_sched, t_sched = sched[0](o_opt), sched[1](t_opt)
    for step in range(steps):
        for p, q, g in zip(ours, theirs, _grads(step), strict=True):
            p.grad = tg.Tensor(g)
            q.grad = torch.tensor(g)
        o_opt.step()
        t_opt.step()
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            np.testing.assert_allclose(
                p.data, q.detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=f"step {step} param {i}"
            )
        if o_sched is not None:
            o_sched.step()
            t_sched.step()
            assert o_sched.get_last_lr() == pytest.approx(t_sched.get_last_lr(), rel=1e-12)
        if edit is not None:
            edit(step, o_opt)
            edit(step, t_opt)
    return o_opt, t_opt, ours


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05),
    dict(lr=0.1, weight_decay=0.1, maximize=True),
]


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_torch(kw):
    torch = _torch()
    _run_both(lambda ps: optim.SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))


ADAM_CASES = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
]


@pytest.mark.parametrize("kw", ADAM_CASES)
def test_adam_matches_torch(kw):
    torch = _torch()
    _run_both(lambda ps: optim.Adam(ps, **kw), lambda ps: torch.optim.Adam(ps, **kw), steps=8)


@pytest.mark.parametrize("kw", [dict(), dict(lr=0.01, weight_decay=0.3), dict(amsgrad=True)])
def test_adamw_matches_torch(kw):
    torch = _torch()
    _run_both(lambda ps: optim.AdamW(ps, **kw), lambda ps: torch.optim.AdamW(ps, **kw), steps=8)


def test_adamw_default_weight_decay_is_decoupled():
    p = tg.Tensor(np.ones(3), requires_grad=True)
    opt = optim.AdamW([p], lr=0.1)
    assert opt.param_groups[0]["weight_decay"] == 1e-2
    p.grad = tg.Tensor(np.zeros(3))
    opt.step()  # zero gradient: only the decay moves p
    np.testing.assert_allclose(p.data, 1 - 0.1 * 1e-2)


def test_param_groups_as_dicts_and_edited_between_steps():
    torch = _torch()
    groups = [dict(params=[0, 2], lr=0.05), dict(params=[1], lr=0.2, momentum=0.5)]

    def edit(step, opt):
        if step == 2:
            opt.param_groups[0]["lr"] = 0.01
            opt.param_groups[1]["momentum"] = 0.9

    o_opt, _, _ = _run_both(
        lambda gs: optim.SGD(gs, lr=1.0, momentum=0.9),
        lambda gs: torch.optim.SGD(gs, lr=1.0, momentum=0.9),
        groups=groups,
        edit=edit,
    )
    assert [g["lr"] for g in o_opt.param_groups] == [0.01, 0.2]
    assert o_opt.param_groups[0]["momentum"] == 0.9  # from the defaults
    assert len(o_opt.param_groups[0]["params"]) == 2


def test_adam_groups_match_torch():
    torch = _torch()
    groups = [dict(params=[0]), dict(params=[1, 2], lr=0.05, betas=(0.5, 0.9))]
    _run_both(lambda gs: optim.Adam(gs, lr=0.01), lambda gs: torch.optim.Adam(gs, lr=0.01),
              groups=groups)  # fmt: skip


@pytest.mark.parametrize("which", ["step", "cosine", "cosine_eta_min"])
def test_schedulers_match_torch(which):
    torch = _torch()
    if which == "step":
        sched = (lambda o: StepLR(o, step_size=3, gamma=0.5),
                 lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5))  # fmt: skip
    elif which == "cosine":
        sched = (lambda o: CosineAnnealingLR(o, T_max=5),
                 lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5))  # fmt: skip
    else:
        tsched = torch.optim.lr_scheduler
        sched = (lambda o: CosineAnnealingLR(o, T_max=4, eta_min=0.01),
                 lambda o: tsched.CosineAnnealingLR(o, T_max=4, eta_min=0.01))  # fmt: skip
    # 12 steps: past T_max the cosine rises again, as PyTorch's recurrence does
    _run_both(lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
              lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
              steps=12, sched=sched)  # fmt: skip


def test_scheduler_values_without_torch():
    p = tg.zeros(1, requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    s = StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(5):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
    opt = optim.Adam([p], lr=1.0)
    c = CosineAnnealingLR(opt, T_max=4, eta_min=0.2)
    got = []
    for _ in range(4):
        c.step()
        got.append(opt.param_groups[0]["lr"])
    want = [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 5)]
    assert got == pytest.approx(want, rel=1e-12)


def test_state_dict_roundtrip_continues_like_uninterrupted():
    """Save after 3 steps, load into a fresh optimizer, continue: same as never stopping."""

    def make(ps):
        return optim.Adam(ps, lr=0.05, weight_decay=0.01)

    a = [tg.Tensor(x, requires_grad=True) for x in _init()]
    opt_a = make(a)
    for step in range(6):
        for p, g in zip(a, _grads(step), strict=True):
            p.grad = tg.Tensor(g)
        opt_a.step()
    b = [tg.Tensor(x, requires_grad=True) for x in _init()]
    opt_b = make(b)
    for step in range(3):
        for p, g in zip(b, _grads(step), strict=True):
            p.grad = tg.Tensor(g)
        opt_b.step()
    sd = opt_b.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    assert sd["state"][0]["step"] == 3 and sd["state"][0]["exp_avg"].shape == (3, 4)
    c = [tg.Tensor(p.data.copy(), requires_grad=True) for p in b]
    opt_c = make(c)
    opt_c.load_state_dict(sd)
    sd["state"][0]["exp_avg"][...] = 1e6  # copied, not aliased
    sd["param_groups"][0]["lr"] = 123.0
    assert opt_c.param_groups[0]["lr"] == 0.05
    for step in range(3, 6):
        for p, g in zip(c, _grads(step), strict=True):
            p.grad = tg.Tensor(g)
        opt_c.step()
    for p, q in zip(a, c, strict=True):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12)


def test_sgd_momentum_state_dict_is_copied():
    p = tg.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = tg.Tensor(np.ones(2))
    opt.step()
    sd = opt.state_dict()
    buf = opt.state[p]["momentum_buffer"]
    sd["state"][0]["momentum_buffer"][...] = 5
    assert np.all(buf == 1)
    opt2 = optim.SGD([p], lr=0.1, momentum=0.9)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[p]["momentum_buffer"] is not buf
    np.testing.assert_array_equal(opt2.state[p]["momentum_buffer"], buf)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": [p]}, {"params": [tg.zeros(1, requires_grad=True)]}],
                  lr=0.1).load_state_dict(sd)  # fmt: skip


def test_frozen_parameters_are_accepted_and_left_alone():
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    m[0].requires_grad_(False)
    frozen = m[0].weight.data.copy()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)  # as torch: frozen ones allowed
    m(tg.randn(3, 2)).sum().backward()
    opt.step()
    np.testing.assert_array_equal(m[0].weight.data, frozen)
    assert m[0].weight.grad is None and m[1].weight.grad is not None
    assert set(opt.state_dict()["state"]) == {2, 3}


def test_zero_grad_sets_none_and_params_without_grad_are_skipped():
    a = tg.Tensor(np.ones(2), requires_grad=True)
    b = tg.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([a, b], lr=0.5)
    a.grad = tg.Tensor(np.ones(2))
    opt.step()
    np.testing.assert_array_equal(a.data, 0.5)
    np.testing.assert_array_equal(b.data, 1.0)  # no grad: untouched
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_step_is_in_place_and_records_nothing():
    m = nn.Linear(3, 2)
    w = m.weight.data
    opt = optim.Adam(m.parameters(), lr=0.1)
    m(tg.randn(4, 3)).sum().backward()
    opt.step()
    assert m.weight.data is w  # updated in place
    assert m.weight.grad_fn is None and m.weight.is_leaf


def test_constructor_errors():
    p = tg.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="list"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)


def test_training_a_model_with_each_optimizer_reduces_loss():
    rng = np.random.default_rng(0)
    x = tg.Tensor(rng.standard_normal((32, 5)).astype(np.float32))
    y = tg.Tensor((x.data @ rng.standard_normal((5, 1))).astype(np.float32))
    for make in (
        lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
        lambda ps: optim.Adam(ps, lr=0.05),
        lambda ps: optim.AdamW(ps, lr=0.05),
    ):
        tg.manual_seed(0)
        model = nn.Linear(5, 1)
        opt = make(model.parameters())
        losses = []
        for _ in range(60):
            loss = nn.MSELoss()(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.05 * losses[0]


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_negative_weight_decay_is_rejected_by_name(cls):
    p = tg.Tensor(np.zeros(3), requires_grad=True)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: invalid weight_decay -0\.1"):
        cls([p], lr=0.1, weight_decay=-0.1)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optim.Adam(p, lr=0.1),
        lambda p: optim.Adam(p, lr=0.1, amsgrad=True),
    ],
    ids=["sgd-momentum", "adam", "adam-amsgrad"],
)
def test_resume_with_a_0d_parameter_continues_like_uninterrupted(make, tmp_path):
    """A 0-d parameter's momentum / moments are 0-d arrays: load_state_dict must keep them
    arrays (updated in place), not turn them into floats as it does saved step counts."""

    def run(opt, w, steps):
        for _ in range(steps):
            w.grad = tg.Tensor(np.asarray(0.5 * w.data + 0.25))
            opt.step()

    w = tg.Tensor(np.array(1.0), requires_grad=True)
    opt = make([w])
    run(opt, w, 2)
    tg.save(opt.state_dict(), tmp_path / "opt.pkl")
    w2 = tg.Tensor(w.numpy().copy(), requires_grad=True)
    resumed = make([w2])
    resumed.load_state_dict(tg.load(tmp_path / "opt.pkl"))
    assert all(
        isinstance(v, np.ndarray) for k, v in resumed.state[w2].items() if k != "step"
    )
    run(opt, w, 3)
    run(resumed, w2, 3)
    assert w2.item() == w.item()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.2),
        lambda p: optim.Adam(p, lr=0.01, weight_decay=0.1, amsgrad=True),
        lambda p: optim.AdamW(p, lr=0.01, maximize=True),
    ],
    ids=["sgd-nesterov-wd", "sgd-dampening", "adam-amsgrad-wd", "adamw-maximize"],
)
def test_updates_in_chunks_equal_the_whole_array_update(make, monkeypatch):
    """Parameters larger than a chunk (and a transposed, non-contiguous gradient, which is
    updated whole) get the same bits as with one chunk: the updates are elementwise."""
    from tinygrad_np.optim import optimizer

    rng = np.random.default_rng(3)
    shapes = [(7, 11), (9, 3), (5,), ()]
    data = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(4)]
    results = []
    for chunk in (1 << 16, 4):
        monkeypatch.setattr(optimizer, "UPDATE_CHUNK", chunk)
        params = [tg.Tensor(d.copy(), requires_grad=True) for d in data]
        opt = make(params)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = tg.Tensor(g)
            params[0].grad = tg.Tensor(np.ascontiguousarray(step[0].T).T)  # non-contiguous
            opt.step()
        results.append([p.numpy() for p in params])
    for whole, chunked in zip(*results, strict=True):
        assert np.array_equal(whole, chunked)


def test_zero_grad_keeping_zeros_detaches_a_create_graph_gradient():
    """zero_grad(set_to_none=False) after backward(create_graph=True): the zeros must be a
    leaf, or every step's graph would hang off the last one's (memory grows, and second
    derivatives count the old graphs too)."""
    import gc

    from tinygrad_np.autograd import Op

    w = tg.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    opt = optim.SGD([w], lr=0.0)
    x = tg.Tensor(np.array([2.0, 3.0, 4.0]))
    counts = []
    for _ in range(6):
        opt.zero_grad(set_to_none=False)
        ((w * x) ** 2).sum().backward(create_graph=True)
        gc.collect()
        counts.append(sum(issubclass(type(o), Op) for o in gc.get_objects()))
    assert counts[-1] == counts[2]  # flat, not growing step by step (ops of other tests
    # in this process, if any, are the same in every count)
    (h,) = tg.grad(w.grad.sum(), w)  # d/dw of 2 w x^2 summed: 2 x^2, this step only
    assert h.tolist() == [8.0, 18.0, 32.0]
    net = nn.Linear(3, 1)
    net(tg.ones(2, 3)).sum().backward(create_graph=True)
    net.zero_grad(set_to_none=False)
    assert net.weight.grad.grad_fn is None and not net.weight.grad.numpy().any()


def test_cosine_resumed_with_last_epoch_keeps_the_groups_rate_as_torch():
    torch = _torch()
    a = tg.Tensor(np.ones(2), requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    ours, theirs = optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1)
    for o in (ours, theirs):
        o.param_groups[0]["initial_lr"] = 0.2  # (a resumed run: lr is the saved epoch's)
    s1 = CosineAnnealingLR(ours, 10, eta_min=0.01, last_epoch=5)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(theirs, 10, eta_min=0.01, last_epoch=5)
    got, want = [s1.get_last_lr()[0]], [s2.get_last_lr()[0]]
    for _ in range(12):
        ours.step()
        theirs.step()
        s1.step()
        s2.step()
        got.append(s1.get_last_lr()[0])
        want.append(s2.get_last_lr()[0])
    assert got[0] == 0.1
    assert got == want


def test_state_follows_the_parameters_dtype_after_double():
    tg.manual_seed(0)
    m = nn.Linear(3, 2)
    opt = optim.Adam(m.parameters(), lr=0.1)
    x = tg.randn(4, 3)
    m(x).sum().backward()
    opt.step()
    m.double()
    opt.zero_grad()
    m(x.astype("float64")).sum().backward()
    w, g = m.weight.data.copy(), m.weight.grad.data
    st = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v)
          for k, v in opt.state[m.weight].items()}  # fmt: skip
    opt.step()
    for k in ("exp_avg", "exp_avg_sq"):
        assert opt.state[m.weight][k].dtype == np.float64
    m1 = 0.9 * st["exp_avg"] + 0.1 * g
    v1 = 0.999 * st["exp_avg_sq"] + 0.001 * g * g
    want = w - 0.1 / (1 - 0.9**2) * m1 / (np.sqrt(v1) / math.sqrt(1 - 0.999**2) + 1e-8)
    np.testing.assert_allclose(m.weight.data, want, rtol=1e-12)


def test_amsgrad_turned_on_and_off_between_steps_as_torch():
    torch = _torch()
    init = np.random.default_rng(0).standard_normal(5)
    a = tg.Tensor(init.copy(), requires_grad=True)
    b = torch.tensor(init.copy(), requires_grad=True)
    ours, theirs = optim.Adam([a], lr=0.1), torch.optim.Adam([b], lr=0.1)
    for step in range(9):
        on = 3 <= step < 6  # off, on, off again
        ours.param_groups[0]["amsgrad"] = theirs.param_groups[0]["amsgrad"] = on
        if on and "max_exp_avg_sq" not in theirs.state[b]:  # (torch raises instead)
            theirs.state[b]["max_exp_avg_sq"] = torch.zeros_like(b)
        g = np.cos(step * init) * (3.0 if step % 3 else 0.1)
        a.grad, b.grad = tg.Tensor(g), torch.tensor(g)
        ours.step()
        theirs.step()
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_step_takes_a_closure_and_state_reads_empty_before_a_step(name):
    torch = _torch()
    kw = {"lr": 0.1, "momentum": 0.9} if name == "SGD" else {"lr": 0.1}
    results = []
    for lib, make in ((optim, lambda v: tg.Tensor(v, requires_grad=True)),
                      (torch.optim, lambda v: torch.tensor(v, requires_grad=True))):  # fmt: skip
        p = make(np.array([1.0, -2.0]))
        opt = getattr(lib, name)([p], **kw)
        assert opt.state[p] == {}  # (a defaultdict, as PyTorch's)

        def closure(p=p, opt=opt):
            opt.zero_grad()
            loss = (p * p).sum()
            loss.backward()
            return loss

        losses = [float(opt.step(closure).item()) for _ in range(3)]
        results.append((losses, np.asarray(p.detach().numpy()).tolist()))
        assert opt.step() is None
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_scheduler_step_with_an_epoch_takes_the_closed_form_as_pytorch():
    torch = _torch()
    import warnings

    def step_lr(lib, o):
        return lib.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5)

    def cosine(lib, o):
        return lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=0.01)

    for make in (step_lr, cosine):
        rates = []
        for lib, p in ((tg, tg.zeros(1, requires_grad=True)),
                       (torch, torch.zeros(1, requires_grad=True))):  # fmt: skip
            opt = lib.optim.SGD([p], lr=0.4)
            sched = make(lib, opt)
            got = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for epoch in (2, 5, 11, 3):
                    opt.step()
                    sched.step(epoch)
                    got.append(sched.get_last_lr()[0])
                    sched.step()
                    got.append(sched.get_last_lr()[0])
            assert any("deprecated" in str(w.message) for w in caught)
            rates.append(got)
        np.testing.assert_allclose(rates[0], rates[1], rtol=1e-15)


def test_named_parameters_make_a_group_with_their_names():
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = optim.SGD(m.named_parameters(), lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in m.parameters()]
    m(tg.randn(4, 2)).sum().backward()
    before = m[0].weight.numpy().copy()
    opt.step()
    assert not np.array_equal(before, m[0].weight.numpy())
    again = optim.SGD(m.named_parameters(), lr=0.5, momentum=0.9)
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["lr"] == 0.1
    assert again.param_groups[0]["param_names"] == opt.param_groups[0]["param_names"]
    with pytest.raises(TypeError, match="not a mix"):
        optim.SGD([("w", m[0].weight), m[0].bias], lr=0.1)


def test_param_groups_all_named_or_none():
    m = nn.Linear(2, 2)
    opt = optim.Adam(m.named_parameters(), lr=0.1)
    with pytest.raises(ValueError, match="name its parameters or none"):
        opt.add_param_group({"params": [nn.Linear(2, 2).weight]})


def test_scheduler_step_with_a_fractional_epoch_keeps_the_fraction():
    """step(epoch) with a fraction (the step(e + i / n) pattern) takes the closed form at
    that very point, as PyTorch: the fraction was dropped (int(epoch))."""
    torch = pytest.importorskip("torch")
    ours = optim.lr_scheduler.CosineAnnealingLR(optim.SGD([tg.Tensor([1.0], requires_grad=True)],
                                                          lr=1.0), T_max=10)  # fmt: skip
    p = torch.nn.Parameter(torch.ones(1))
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([p], lr=1.0), T_max=10)
    with pytest.warns(UserWarning):
        ours.step(2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.step(2.5)
    assert ours.last_epoch == 2.5
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-15)
    ours.step()
    theirs.step()
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
