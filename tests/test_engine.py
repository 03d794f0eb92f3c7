"""The engine: topological order, accumulation, freeing, retain_graph, create_graph, hooks."""

from __future__ import annotations

import sys
import weakref

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import Tensor


def _x(*shape, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# ----------------------------------------------------------------------------- order


def test_chain_of_20000_ops_without_recursion():
    assert sys.getrecursionlimit() < 20_000  # a recursive walk would overflow
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001**20_000] * 2, rtol=1e-9)
    del y  # dropping the deep graph must not overflow either


def test_chain_of_20000_ops_create_graph_and_grad():
    x = Tensor(np.array(0.5), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y + x * 0.0  # 20,000 ops, x used 10,001 times
    (g,) = tg.grad(y * y, x, create_graph=True)
    assert g.item() == pytest.approx(1.0)  # d(x^2)/dx at 0.5
    (gg,) = tg.grad(g, x)
    assert gg.item() == pytest.approx(2.0)


def test_topological_order_waits_for_all_consumers():
    # a is consumed by a short path and a long path; its gradient must be complete
    # before its own VJP runs, or the long path's contribution is lost
    x = _x(3)
    a = x * 2.0
    long = a
    for _ in range(5):
        long = long.tanh()
    y = (a + long).sum()
    y.backward()
    xt = x.numpy()
    t = 2 * xt
    d = np.ones_like(t)
    for _ in range(5):
        d = d * (1 - np.tanh(t) ** 2)
        t = np.tanh(t)
    np.testing.assert_allclose(x.grad.numpy(), 2 * (1 + d), rtol=1e-12)


# ----------------------------------------------------------------------------- accumulation


def test_tensor_used_more_than_once_sums_gradients():
    x = _x(4)
    y = (x * x + x * 3.0 - x).sum()  # dy/dx = 2x + 2
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 2, rtol=1e-12)


def test_diamond_sums_gradients_of_shared_non_leaf():
    x = _x(2, 3)
    a = x.exp()
    y = (a * 2.0 + a * a).sum()
    y.backward()
    e = np.exp(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), (2 + 2 * e) * e, rtol=1e-12)


def test_gradients_accumulate_into_leaves_across_backwards():
    x = _x(3)
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])
    first = x.grad
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2.0 + 2 * x.numpy())
    assert x.grad is first  # accumulated in place, as PyTorch does
    x.grad = None
    (x * 5.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0] * 3)


def test_broadcast_gradient_is_summed_to_input_shape():
    a, b = _x(2, 3), _x(3, seed=1)
    (a * b).sum().backward()
    assert b.grad.shape == (3,)
    np.testing.assert_allclose(b.grad.numpy(), a.numpy().sum(0))


def test_mixed_dtypes_give_gradients_in_each_inputs_dtype():
    a = Tensor(np.ones(3, np.float32), requires_grad=True)
    b = Tensor(np.full(3, 2.0), requires_grad=True)  # float64
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), [2.0] * 3)


def test_input_without_grad_gets_none_and_its_vjp_side_is_skipped():
    a, c = _x(3), Tensor(np.ones(3))
    (a * c).sum().backward()
    assert c.grad is None and a.grad is not None


# ----------------------------------------------------------------------------- freeing


def test_backward_frees_saved_arrays_and_second_pass_raises():
    x = _x(3)
    y = x.exp()
    node = y.grad_fn
    assert "out" in node.__dict__  # Exp saved its output for the VJP
    y.sum().backward()
    assert "out" not in node.__dict__
    assert node._released
    with pytest.raises(RuntimeError, match="retain_graph=True") as info:
        y.sum().backward()
    assert "second time" in str(info.value)


def test_retain_graph_allows_second_pass():
    x = _x(3)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_grad_function_frees_unless_retained():
    x = _x(2)
    y = (x * x).sum()
    tg.grad(y, x, retain_graph=True)
    (g,) = tg.grad(y, x)
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy())
    with pytest.raises(RuntimeError, match="second time"):
        tg.grad(y, x)


# ----------------------------------------------------------------------------- create_graph


def test_create_graph_gives_second_derivative():
    x = _x(4)
    y = (x**3).sum()
    (g,) = tg.grad(y, x, create_graph=True)
    assert g.requires_grad and g.grad_fn is not None
    np.testing.assert_allclose(g.numpy(), 3 * x.numpy() ** 2, rtol=1e-12)
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy(), rtol=1e-12)


def test_backward_create_graph_makes_differentiable_grad():
    x = _x(3)
    (x.exp() * x).sum().backward(create_graph=True)
    gx = x.grad
    assert gx.requires_grad
    xs = x.numpy().copy()
    np.testing.assert_allclose(gx.numpy(), np.exp(xs) * (1 + xs), rtol=1e-12)
    x.grad = None
    gx.sum().backward()  # create_graph implied retain_graph: the first graph is still there
    np.testing.assert_allclose(x.grad.numpy(), np.exp(xs) * (2 + xs), rtol=1e-12)


def test_hessian_vector_product_matches_analytic():
    # f(x) = sum(tanh(A x)), H v = A^T diag(f'') A v with f''(t) = -2 tanh(t)(1 - tanh^2 t)
    rng = np.random.default_rng(3)
    A = Tensor(rng.standard_normal((3, 4)))
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    v = Tensor(rng.standard_normal(4))
    f = (A @ x).tanh().sum()
    (g,) = tg.grad(f, x, create_graph=True)
    (hv,) = tg.grad((g * v).sum(), x)
    t = np.tanh(A.numpy() @ x.numpy())
    want = A.numpy().T @ (-2 * t * (1 - t**2) * (A.numpy() @ v.numpy()))
    np.testing.assert_allclose(hv.numpy(), want, rtol=1e-10)


def test_gradient_penalty_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    w0, x0 = rng.standard_normal((3, 2)), rng.standard_normal((5, 3))
    w, x = Tensor(w0, requires_grad=True), Tensor(x0, requires_grad=True)
    out = (x @ w).sigmoid().sum()
    (gx,) = tg.grad(out, x, create_graph=True)
    ((gx * gx).sum()).backward()
    wt = torch.tensor(w0, requires_grad=True)
    xt = torch.tensor(x0, requires_grad=True)
    (gxt,) = torch.autograd.grad((xt @ wt).sigmoid().sum(), xt, create_graph=True)
    (gxt * gxt).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), wt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_without_create_graph_grads_are_constants():
    x = _x(2)
    (g,) = tg.grad((x * x).sum(), x)
    assert not g.requires_grad and g.grad_fn is None
    (x * x).sum().backward()
    assert not x.grad.requires_grad


# ----------------------------------------------------------------------------- grad mode


def test_no_grad_records_nothing_and_enable_grad_reenables():
    x = _x(2)
    with tg.no_grad():
        y = x * 2.0
        with tg.enable_grad():
            z = x * 2.0
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None and z.requires_grad
    assert (x * 2.0).requires_grad


def test_grad_mode_is_per_thread():
    # a no_grad block (or a backward, which records nothing) in one thread must not stop
    # another thread's forward from recording: each thread has its own grad mode
    import threading

    inside, done = threading.Event(), threading.Event()

    def hold_no_grad():
        with tg.no_grad():
            inside.set()
            done.wait(10)

    t = threading.Thread(target=hold_no_grad)
    t.start()
    try:
        assert inside.wait(10)
        x = Tensor([1.0, 2.0], requires_grad=True)
        y = (x * x).sum()  # recorded here although the other thread is inside no_grad
        assert tg.is_grad_enabled() and y.requires_grad
        y.backward()
        assert x.grad.tolist() == [2.0, 4.0]
    finally:
        done.set()
        t.join()
    seen = []
    t = threading.Thread(target=lambda: seen.append(tg.is_grad_enabled()))
    with tg.no_grad():  # a new thread starts with recording on, as in PyTorch
        t.start()
        t.join()
    assert seen == [True]


def test_detach_cuts_the_graph():
    x = _x(3)
    y = x.detach() * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x.numpy())
    assert x.detach().data is x.data  # shares memory


def test_backward_on_leaf_output():
    x = _x(3)
    x.backward(Tensor(np.array([1.0, 2.0, 3.0])))
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0, 3.0])


# ----------------------------------------------------------------------------- hooks and grad()


def test_hooks_see_and_replace_gradients():
    x = _x(3)
    y = x * 2.0
    seen = []
    y.register_hook(lambda g: seen.append(g.numpy().copy()))
    handle = y.register_hook(lambda g: g * 10.0)
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [1.0] * 3)
    np.testing.assert_allclose(x.grad.numpy(), [20.0] * 3)
    handle.remove()
    x.grad = None
    y2 = x * 2.0
    y2.register_hook(lambda g: None)
    y2.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0] * 3)


def test_leaf_hook_runs_once_on_total_gradient():
    x = _x(2)
    calls = []
    x.register_hook(lambda g: calls.append(g.numpy().copy()))
    (x * 2.0 + x * 3.0).sum().backward()
    assert len(calls) == 1
    np.testing.assert_allclose(calls[0], [5.0, 5.0])


def test_hook_returning_wrong_shape_is_an_error():
    x = _x(2)
    y = x * 2.0
    y.register_hook(lambda g: Tensor(np.ones(3)))
    with pytest.raises(RuntimeError, match="hook"):
        y.sum().backward()


def test_retain_grad_keeps_non_leaf_gradient():
    x = _x(3)
    h = x * 3.0
    h.retain_grad()
    other = x * 4.0
    (h * h + other).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    assert other.grad is None


def test_grad_returns_without_accumulating():
    x, w = _x(3), _x(3, seed=1)
    y = (x * w).sum()
    gx, gw = tg.grad(y, (x, w))
    np.testing.assert_allclose(gx.numpy(), w.numpy())
    np.testing.assert_allclose(gw.numpy(), x.numpy())
    assert x.grad is None and w.grad is None


def test_grad_of_non_leaf_input():
    x = _x(3)
    h = x.exp()
    y = (h * h).sum()
    (gh,) = tg.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())


def test_grad_unused_input():
    x, z = _x(2), _x(2, seed=1)
    y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        tg.grad(y, (x, z), retain_graph=True)
    gx, gz = tg.grad(y, (x, z), allow_unused=True)
    assert gz is None and gx is not None


def test_grad_with_explicit_grad_outputs():
    x = _x(3)
    y = x * x
    (g,) = tg.grad(y, x, grad_outputs=Tensor(np.array([1.0, 0.0, 2.0])))
    np.testing.assert_allclose(g.numpy(), 2 * x.numpy() * [1.0, 0.0, 2.0])


def test_backward_frees_large_intermediates_but_keeps_the_graph_drawable():
    # An activation the user no longer holds is freed once backward has passed it,
    # as PyTorch frees saved tensors; the graph's structure (shapes, dtypes) remains.
    import gc

    x = tg.Tensor(np.ones((64, 512), np.float32), requires_grad=True)
    h = x * 2.0  # 128 KiB intermediate
    ref = weakref.ref(h.data)
    loss = (h * h).sum()  # mul's VJP needs h's values
    del h
    gc.collect()
    assert ref() is not None  # alive in the graph until backward
    loss.backward()
    gc.collect()
    assert ref() is None
    mul = loss.grad_fn.inputs[0].grad_fn
    stand_in = mul.inputs[0]
    assert stand_in.shape == (64, 512) and stand_in.dtype == np.float32
    with pytest.raises(RuntimeError, match="freed by backward"):
        np.asarray(stand_in.data)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((64, 512), 8.0, np.float32))


def test_retain_graph_keeps_intermediates():
    x = tg.Tensor(np.ones((64, 512), np.float32), requires_grad=True)
    h = x * 2.0
    ref = weakref.ref(h.data)
    loss = (h * h).sum()
    del h
    loss.backward(retain_graph=True)
    assert ref() is not None
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((64, 512), 16.0, np.float32))


def test_ops_whose_vjp_needs_only_shapes_do_not_keep_their_input_alive():
    # relu's VJP uses its output, reshape's only a shape: the conv output feeding a relu
    # is not held by the graph (as PyTorch frees what no VJP saved)
    import gc

    x = tg.Tensor(np.linspace(-1, 1, 64 * 512).reshape(64, 512), requires_grad=True)
    h = x * 3.0
    ref = weakref.ref(h.data)
    y = h.relu().reshape(-1)
    del h
    gc.collect()
    assert ref() is None
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.where(x.numpy() > 0, 3.0, 0.0))


# ----------------------------------------------------------------------------- leaf .grad arrays


class _Gives(tg.autograd.Op):
    """y = x; its VJP returns a fresh array and lets the test find it again: by a weak
    reference (no holder) or, with ``keep``, by a strong one (a holder)."""

    refs: list = []

    def forward(self, x, keep):
        return x.copy()

    def vjp(self, g):
        arr = g.data * 2.0
        _Gives.refs.append(arr if self.args["keep"] else weakref.ref(arr))
        return (Tensor._make(arr, False, None),)


def test_leaf_grad_is_the_vjp_array_itself_unless_someone_holds_it():
    x = _x(3)
    _Gives.refs.clear()
    _Gives.apply(x, keep=False).sum().backward()
    assert x.grad.data is _Gives.refs[0]()  # not copied: nobody else could see it
    x.grad = None
    _Gives.apply(x, keep=True).sum().backward()
    held = _Gives.refs[1]
    assert not np.shares_memory(x.grad.data, held)  # copied: the op's list holds it
    np.testing.assert_array_equal(x.grad.data, held)


def test_leaf_grads_never_share_memory_with_each_other_or_their_holders():
    a, b = _x(3), _x(3, seed=1)
    (a + b).sum().backward()  # both leaves are given the one upstream gradient
    assert not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data[0] = 7.0
    assert b.grad.data[0] == 1.0
    x = _x(3)
    g = Tensor(np.array([1.0, 2.0, 3.0]))
    x.backward(g)  # the caller still holds g
    assert not np.shares_memory(x.grad.data, g.data)
    kept = []
    w = _x(3, seed=2)
    w.register_hook(kept.append)  # a hook keeps what it is shown
    (w * 2.0).sum().backward()
    assert not np.shares_memory(w.grad.data, kept[0].data)
    v = _x(6, seed=3)
    v.reshape(2, 3).sum().backward()  # a view of another array
    assert v.grad.data.flags.owndata and v.grad.data.base is None


def test_grad_can_hand_on_each_gradient_as_soon_as_it_is_final():
    """``_on_leaf`` (used by nn.DataParallel's workers) sees each input leaf's final
    gradient, hooks applied, once, as soon as the last node feeding it has run: here the
    layers nearest the output first, ``a`` (used twice) only after its second use."""
    a, b, c = _x(3), _x(3, seed=1), _x(3, seed=2)
    x = Tensor(np.array([0.5, -1.0, 2.0]))
    b.register_hook(lambda g: g * 10.0)

    def f():
        return (((x * a).tanh() * b + a).tanh() * c).sum()

    seen = []
    got = tg.grad(f(), (a, b, c), _on_leaf=lambda t, g: seen.append((t, g.numpy().copy())))
    assert [id(t) for t, _ in seen] == [id(c), id(b), id(a)]
    want = tg.grad(f(), (a, b, c))
    order = [id(a), id(b), id(c)]
    for (_, g), w, r in zip(sorted(seen, key=lambda s: order.index(id(s[0]))), want, got,
                            strict=True):  # fmt: skip
        np.testing.assert_array_equal(g, w.numpy())
        np.testing.assert_array_equal(r.numpy(), w.numpy())


# ----------------------------------------------------------------------------- found by a
# conformance check against PyTorch (thirteenth session)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("fn", ["exp", "sigmoid", "tanh", "sqrt", "softmax"])
def test_recorded_vjp_uses_the_output_tensor_the_caller_holds(fn):
    """create_graph: the VJP of an op that reuses its output goes through the caller's
    output tensor, so a gradient with respect to it exists and its hook runs in the
    second-order pass too (a hook that doubles the gradient doubles the second
    derivative too): the same values as PyTorch."""
    torch = _torch()
    x0 = np.array([0.5, 1.5, 2.0])
    got = []
    for lib in ("tg", "torch"):
        calls = []
        if lib == "tg":
            x = tg.Tensor(x0, requires_grad=True)
            y = getattr(x, fn)() if fn != "softmax" else x.softmax(-1)
            y.register_hook(lambda g, calls=calls: (calls.append(1), g * 2)[1])
            (g,) = tg.grad((y * tg.Tensor(x0)).sum(), x, create_graph=True)
            assert len(calls) == 1
            (second,) = tg.grad(g.sum(), x, retain_graph=True)
            assert len(calls) == 2
            (via_y,) = tg.grad(g.sum(), y)
            got.append((second.numpy(), via_y.numpy()))
        else:
            x = torch.tensor(x0, requires_grad=True)
            y = getattr(torch, fn)(x) if fn != "softmax" else x.softmax(-1)
            y.register_hook(lambda g, calls=calls: (calls.append(1), g * 2)[1])
            (g,) = torch.autograd.grad((y * torch.tensor(x0)).sum(), x, create_graph=True)
            (second,) = torch.autograd.grad(g.sum(), x, retain_graph=True)
            (via_y,) = torch.autograd.grad(g.sum(), y)
            got.append((second.numpy(), via_y.numpy()))
    for ours, theirs in zip(*got, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_retained_gradient_accumulates_over_backward_calls():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.retain_grad()
    z = (y * y).sum()
    z.backward(retain_graph=True)
    z.backward()
    assert y.grad.tolist() == [8.0, 16.0] and x.grad.tolist() == [16.0, 32.0]


def test_grad_runs_only_the_branches_that_lead_to_its_inputs():
    a = tg.Tensor([1.0, 2.0], requires_grad=True)
    b = tg.Tensor([3.0, 4.0], requires_grad=True)
    h = b * 2
    calls = []
    h.register_hook(lambda g: calls.append("h"))
    b.register_hook(lambda g: calls.append("b"))
    (ga,) = tg.grad((a * h).sum(), a)
    assert ga.tolist() == [6.0, 8.0] and calls == []
    (gh,) = tg.grad((a * h).sum(), h)  # a non-leaf input: its own hook runs, b's does not
    assert gh.tolist() == [1.0, 2.0] and calls == ["h"]


def test_bare_no_grad_decorates_methods_and_generators():
    class Model:
        @tg.no_grad
        def bare(self, x):
            return (x * 2).requires_grad

        @tg.no_grad()
        def called(self, x):
            return (x * 2).requires_grad

    @tg.no_grad
    def gen(x):
        yield (x * 2).requires_grad
        yield (x * 3).requires_grad
        return "done"

    def outer(x):
        result = yield from gen(x)
        yield result

    x = tg.ones(2, requires_grad=True)
    assert Model().bare(x) is False and Model().called(x) is False
    assert list(outer(x)) == [False, False, "done"]
    assert (x * 2).requires_grad  # the mode came back between and after the yields
    assert Model.bare.__name__ == "bare"


def test_create_graph_leaf_gradients_are_tensors_of_their_own():
    a = tg.Tensor([1.0, 2.0], requires_grad=True)
    b = tg.Tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward(create_graph=True)
    assert a.grad is not b.grad
    with tg.no_grad():
        a.grad *= 0  # writable, and b's is untouched
    assert b.grad.tolist() == [1.0, 1.0]
    gt = tg.Tensor([1.0, 1.0])
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    x.backward(gt, create_graph=True)
    assert x.grad is not gt


def test_in_place_with_an_operand_that_requires_grad_is_an_error_not_a_lost_gradient():
    w = tg.Tensor([1.0, 2.0], requires_grad=True)
    x = tg.zeros(2)
    with pytest.raises(RuntimeError, match="x = x \\+ w"):
        x += w
    with pytest.raises(RuntimeError, match="where or cat"):
        x[0] = w[0]
    with tg.no_grad():  # (no graph to lose)
        x += w
        x[1] = w[0]
    assert x.tolist() == [1.0, 1.0]


def test_gradcheck_leaves_its_inputs_exactly_as_they_were():
    a0 = np.array([0.5, 1.5, 2.5])
    a = tg.Tensor(a0.copy(), requires_grad=True)
    assert tg.gradcheck(lambda t: t.exp() * t, a, fast_mode=True)
    assert tg.gradcheck(lambda t: t.exp() * t, a)
    assert np.array_equal(a.numpy(), a0)


def test_changing_a_saved_tensor_in_place_raises_at_backward():
    """PyTorch's version check, for the cases that matter: a factor of a product or a
    layer's weight changed (an optimizer step before backward), an output an op reuses."""
    w = tg.Tensor([1.0, 2.0], requires_grad=True)
    y = (w * w).sum()
    with tg.no_grad():
        w += 1
    with pytest.raises(RuntimeError, match="backward of 'mul' reads was changed in place"):
        y.backward()
    lin = tg.nn.Linear(2, 2)
    opt = tg.optim.SGD(lin.parameters(), lr=0.1)
    out = lin(tg.randn(3, 2, requires_grad=True)).sum()  # (the input's gradient reads w)
    for p in lin.parameters():
        p.grad = tg.zeros(*p.shape)
    opt.step()
    with pytest.raises(RuntimeError, match="'linear' reads"):
        out.backward()
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    e = x.exp()
    y = (e * 1).sum()
    with tg.no_grad():
        e[0] = 5.0
    with pytest.raises(RuntimeError, match="output of 'exp'"):
        y.backward()


def test_changes_nothing_reads_do_not_raise():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).sum() + x.exp().sum()  # (2 is not x's factor's gradient; exp keeps its output)
    with tg.no_grad():
        x += 1
    y.backward()
    assert np.allclose(x.grad.numpy(), 2 + np.exp([1.0, 2.0]))
    # a weight stepped before the backward of a layer whose input needs no gradient: its
    # gradient reads only the input (as PyTorch, which saves only that)
    lin = tg.nn.Linear(2, 2)
    out = lin(tg.ones(3, 2)).sum()
    with tg.no_grad():
        lin.weight += 1
    out.backward()
    assert np.allclose(lin.weight.grad.numpy(), 3.0)
    # the usual loop: step after backward, then a new forward
    lin = tg.nn.Linear(2, 1)
    opt = tg.optim.Adam(lin.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        lin(tg.ones(4, 2)).sum().backward()
        opt.step()


def test_gradient_with_respect_to_an_output_an_op_reuses_after_create_graph():
    torch = _torch()
    x0 = np.array([0.5, 1.5])
    x = tg.Tensor(x0, requires_grad=True)
    y = x.exp()  # no hook, no retain_grad
    (g,) = tg.grad(y.sum(), x, create_graph=True)  # g = exp(x), built from y's node
    (gy,) = tg.grad((g * g).sum(), y)
    xt = torch.tensor(x0, requires_grad=True)
    yt = xt.exp()
    (gt,) = torch.autograd.grad(yt.sum(), xt, create_graph=True)
    (gyt,) = torch.autograd.grad((gt * gt).sum(), yt)
    np.testing.assert_allclose(gy.numpy(), gyt.numpy(), rtol=1e-12)


@pytest.mark.parametrize(
    "name, make",
    [
        ("pow", lambda w: (w**2).sum()),
        ("pow", lambda w: (2.0**w).sum()),
        ("div", lambda w: (3.0 / w).sum()),
        ("mse_loss", lambda w: F.mse_loss(w, tg.Tensor([1.0, 2.0]))),
        ("binary_cross_entropy_with_logits",
         lambda w: F.binary_cross_entropy_with_logits(w, tg.Tensor([0.0, 1.0]))),  # fmt: skip
    ],
)
def test_an_input_a_gradient_reads_of_itself_is_checked_for_changes(name, make):
    """A power's base, a divisor, a loss's input: their own gradients read them, and a
    change in place between forward and backward (an optimizer step under no_grad) gave a
    wrong gradient with no error (an engine hunt; PyTorch raises)."""
    w = tg.Tensor([1.0, 2.0], requires_grad=True)
    y = make(w)
    with tg.no_grad():
        w *= 3
    with pytest.raises(RuntimeError, match=f"backward of '{name}' reads"):
        y.backward()


@pytest.mark.parametrize("through", ["slice", "detach", "reshape"])
def test_a_saved_output_changed_through_another_tensor_on_its_memory_raises(through):
    x = tg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = x.exp()
    y = (a * 1.0).sum()
    view = {"slice": lambda: a[1:], "detach": lambda: a.detach(),
            "reshape": lambda: a.reshape(3)}[through]()  # fmt: skip
    with tg.no_grad():
        view *= 2
    with pytest.raises(RuntimeError, match="output of 'exp'"):
        y.backward()


def test_ops_whose_backward_reads_no_input_do_not_raise_for_a_changed_input():
    """False alarms the engine hunt found: where's other operand, log_softmax's and
    cross_entropy's input (their plain backward reads saved values), as PyTorch."""
    w = tg.Tensor([1.0, -2.0, 3.0], requires_grad=True)
    b = tg.Tensor([1.0, -1.0, 2.0])
    y = tg.where(b > 0, w, b).sum()
    with tg.no_grad():
        b *= 2
    y.backward()
    assert w.grad.tolist() == [1.0, 0.0, 1.0]
    for make in (lambda v: v.log_softmax(0)[0], lambda v: F.cross_entropy(v.reshape(1, 3), [0])):
        v = tg.Tensor([0.5, 1.0, -1.0], requires_grad=True)
        want = tg.grad(make(v), [v])[0].numpy()
        y = make(v)
        with tg.no_grad():
            v *= 2
        y.backward()
        np.testing.assert_allclose(v.grad.numpy(), want, rtol=1e-6)


def test_gradients_accumulate_in_place_and_count_as_a_change():
    """As PyTorch: a second backward adds into .grad's array (an array taken from it sees
    the sum), and a graph that read the old gradient raises instead of using the new
    values; zero_grad(set_to_none=False) counts the same."""
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    arr = x.grad.numpy()
    w = tg.Tensor([3.0, 4.0], requires_grad=True)
    loss2 = (w * x.grad).sum()
    (x * 3.0).sum().backward()
    assert arr.tolist() == [5.0, 7.0] and x.grad.tolist() == [5.0, 7.0]
    with pytest.raises(RuntimeError, match="changed in place"):
        loss2.backward()
    p = tg.nn.Parameter(tg.Tensor([1.0, 2.0]))
    opt = tg.optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    loss3 = (w * p.grad).sum()
    opt.zero_grad(set_to_none=False)
    with pytest.raises(RuntimeError, match="changed in place"):
        loss3.backward()
    # a penalty on a recorded gradient, then a plain backward that accumulates into it
    z = tg.Tensor([1.0, 2.0], requires_grad=True)
    (z**3).sum().backward(create_graph=True)
    pen = (z.grad * z.grad).sum()
    (z * z).sum().backward()
    with pytest.raises(RuntimeError, match="changed in place"):
        tg.grad(pen, [z])


def test_attribute_assignments_check_as_pytorch():
    i = tg.Tensor(np.array([1, 2]))
    with pytest.raises(TypeError, match="floating-point"):
        i.requires_grad = True
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    with pytest.raises(RuntimeError, match="only be switched off on a leaf"):
        h.requires_grad = False
    with pytest.raises(TypeError, match="must be a bool"):
        x.requires_grad = "yes"
    x.requires_grad = False
    assert not x.requires_grad
    with pytest.raises(RuntimeError, match="its own grad"):
        x.grad = x


def test_removing_a_hook_removes_that_registration_not_the_first_equal_one():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)

    def add(g):
        return g + 10

    def double(g):
        return g * 2

    x.register_hook(add)
    x.register_hook(double)
    second = x.register_hook(add)
    second.remove()
    (x * 1.0).sum().backward()
    assert x.grad.tolist() == [22.0, 22.0]  # (1 + 10) * 2: the second add is gone


def test_a_wheres_condition_is_freed_by_the_backward():
    import gc
    import weakref

    x = tg.Tensor(np.random.default_rng(0).random(1 << 18).astype(np.float32),
                  requires_grad=True)  # fmt: skip
    y = tg.where(x > 0.5, x, x * 0.5)
    cond = weakref.ref(y.grad_fn.inputs[0].data)
    y.sum().backward()
    gc.collect()
    assert cond() is None  # (the output y still lives; its mask need not)


def test_zero_dim_grad_accumulates_after_a_recorded_backward():
    """A 0-d ``.grad`` that a create_graph backward made a graph node, accumulated into by
    a later backward: the sum of two 0-d arrays is a NumPy scalar, which crashed the
    in-place bookkeeping (no weak reference to a numpy.float64)."""
    x = Tensor(np.float64(2.0), requires_grad=True)
    (x**3).backward(create_graph=True)
    (x**2).backward()
    assert x.grad.shape == () and float(x.grad.data) == 16.0  # 3 * 2^2 + 2 * 2
    x = Tensor(np.float64(2.0), requires_grad=True)
    y = x * 1.0
    y.retain_grad()
    tg.grad(y * y, [x], create_graph=True)
    (y * 3.0).backward()
    assert y.grad.shape == () and float(y.grad.data) == 7.0  # 2y, then + 3 (as PyTorch)


@pytest.mark.parametrize("fn", ["log_softmax", "softmax"])
def test_softmax_second_order_graph_runs_through_the_output(fn):
    """A recorded VJP of log_softmax goes through its output's node, as PyTorch's (which
    saves the output): a hook on y applies in the second-order pass, and the first-order
    gradient can be differentiated with respect to y. Recomputing softmax(x) went round
    y: the hook was lost (half PyTorch's value) and y was "not used"."""
    torch = pytest.importorskip("torch")
    a = np.array([[0.3, -1.2], [0.5, 2.0]])
    w = np.array([[0.7, 0.1], [-0.4, 1.3]])
    c = np.array([[1.0, -2.0], [0.5, 3.0]])
    results = []
    for T, grad in ((Tensor, tg.grad), (torch.tensor, torch.autograd.grad)):
        x = T(a, requires_grad=True)
        y = getattr(x, fn)(1)
        y.register_hook(lambda g: g * 2.0)
        (gx,) = grad((y * T(w)).sum(), [x], create_graph=True)
        (h,) = grad((gx * T(c)).sum(), [x], retain_graph=True)
        (gy,) = grad((gx * T(c)).sum(), [y])
        results.append([np.asarray(t.detach().numpy()) for t in (gx, h, gy)])
    for ours, theirs in zip(*results, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "fn", [lambda a: a.relu(), lambda a: a.abs(), lambda a: F.leaky_relu(a, 0.1),
           lambda a: F.max_pool2d(a.reshape(1, 1, 2, 2), 2)],
)  # fmt: skip
def test_second_derivative_through_a_mask_only_vjp_is_zeros(fn):
    """With nothing but x requiring grad, the recorded gradient of relu, abs, leaky_relu or
    max pooling still depends on x (with a zero derivative), as PyTorch's: it requires
    grad, and the next derivative is zeros. It was a constant, and the next grad raised
    that x was unused."""
    x = Tensor(np.array([[0.3, -1.2], [0.5, 2.0]]), requires_grad=True)
    w = Tensor(np.array([[0.7, 0.1], [-0.4, 1.3]]))  # a frozen layer
    (g,) = tg.grad(fn(x @ w).sum(), [x], create_graph=True)
    assert g.requires_grad
    (h,) = tg.grad((g * g).sum(), [x])
    np.testing.assert_array_equal(h.data, np.zeros((2, 2)))
    assert tg.gradgradcheck(lambda a: fn(a @ w), (x,))
