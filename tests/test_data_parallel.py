"""nn.DataParallel: the batch split over worker processes gives the unsplit module's
values and gradients, keeps the workers' parameters in step with the optimizer, and
reports a worker's failure."""

from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, optim
from tinygrad_np.models import LeNet5


def _pair(dtype=np.float64, seed=0):
    tg.manual_seed(seed)
    net = LeNet5().to(dtype)
    twin = LeNet5().to(dtype)
    twin.load_state_dict(net.state_dict())
    return net, twin


def _batch(n, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


@pytest.fixture
def small():
    """(dp, x, the first call's output) for a Linear(3, 2) over 2 processes."""
    tg.manual_seed(0)
    with nn.DataParallel(nn.Sequential(nn.Linear(3, 2)), workers=2) as dp:
        x = tg.randn(4, 3)
        yield dp, x, dp(x).data


@pytest.mark.parametrize("workers, n", [(2, 7), (3, 8), (2, 1)])
def test_values_and_gradients_match_the_unsplit_module(workers, n):
    net, twin = _pair()
    with nn.DataParallel(net, workers=workers) as dp:
        x, y = _batch(n)
        xa = tg.Tensor(x, requires_grad=True)
        xb = tg.Tensor(x, requires_grad=True)
        out = dp(xa)
        ref = twin(xb)
        np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)
        F.cross_entropy(out, y).backward()
        F.cross_entropy(ref, y).backward()
        for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(
                p.grad.data, q.grad.data, rtol=1e-10, atol=1e-12, err_msg=name
            )
        np.testing.assert_allclose(xa.grad.data, xb.grad.data, rtol=1e-10, atol=1e-12)
        if n > 1:  # the worker processes really ran (not the in-process fallback)
            procs = dp._workers.procs
            assert all(p.is_alive() for p in procs)
    if n > 1:  # leaving the with block stopped them
        assert dp._workers is None and not any(p.is_alive() for p in procs)


def test_optimizer_steps_reach_the_workers():
    net, twin = _pair()
    with nn.DataParallel(net, workers=2) as dp:
        opt_a = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        opt_b = optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
        for step in range(3):
            x, y = _batch(10, seed=step)
            for model, opt in ((dp, opt_a), (twin, opt_b)):
                opt.zero_grad()
                F.cross_entropy(model(tg.Tensor(x)), y).backward()
                opt.step()
        for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-10, atol=1e-12, err_msg=name)


def test_float32_training_is_repeatable_bit_for_bit():
    def run():
        net, _ = _pair(np.float32)
        dp = nn.DataParallel(net, workers=2)
        opt = optim.Adam(net.parameters(), lr=1e-3)
        losses = []
        try:
            for step in range(3):
                x, y = _batch(16, np.float32, seed=step)
                opt.zero_grad()
                loss = F.cross_entropy(dp(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
        finally:
            dp.close()
        return losses, net.features[0].weight.data.copy()

    (la, wa), (lb, wb) = run(), run()
    assert la == lb
    assert np.array_equal(wa, wb)


def test_frozen_parameters_get_no_gradient_and_no_grad_records_nothing():
    net, twin = _pair()
    net.features[0].weight.requires_grad = False
    twin.features[0].weight.requires_grad = False
    with nn.DataParallel(net, workers=2) as dp:
        x, y = _batch(6)
        F.cross_entropy(dp(x), y).backward()
        F.cross_entropy(twin(tg.Tensor(x)), y).backward()
        assert net.features[0].weight.grad is None
        got, want = net.features[3].weight.grad.data, twin.features[3].weight.grad.data
        np.testing.assert_allclose(got, want, rtol=1e-10)
        with tg.no_grad():
            out = dp(x)
        assert out.grad_fn is None and not out.requires_grad
        dp.eval()
        assert not net.training
        np.testing.assert_allclose(dp(x).data, twin(tg.Tensor(x)).data, rtol=1e-12)


class _FailsInWorkers(nn.Module):
    def __init__(self, parent_pid):
        super().__init__()
        self.parent_pid = parent_pid
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        if os.getpid() != self.parent_pid:
            raise ValueError("boom in a worker")
        return self.lin(x)


def test_a_worker_error_is_raised_in_the_caller_with_its_traceback():
    with nn.DataParallel(_FailsInWorkers(os.getpid()), workers=2) as dp:
        with pytest.raises(RuntimeError, match=r"worker 1 failed:(.|\n)*boom in a worker"):
            dp(tg.randn(4, 3))
        dp.module.parent_pid = None  # now the parent's shard fails, the worker's passes
        dp.close()  # restart so the workers see the new attribute
        with pytest.raises(ValueError, match="boom"):
            dp(tg.randn(4, 3))
        # the worker's answer was read: the channel is still in step
        dp.module.parent_pid = os.getpid()
        dp.close()
        with pytest.raises(RuntimeError, match="worker 1 failed"):
            dp(tg.randn(4, 3))


def test_double_backward_through_it_is_refused():
    net, _ = _pair()
    with nn.DataParallel(net, workers=2) as dp:
        x = tg.Tensor(_batch(4)[0], requires_grad=True)
        loss = dp(x).sum()
        with pytest.raises(NotImplementedError, match="create_graph"):
            tg.grad(loss, x, create_graph=True)


def test_dtype_change_restarts_the_workers_and_close_stops_them():
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    with nn.DataParallel(net, workers=2) as dp:
        x = np.random.default_rng(1).standard_normal((6, 5))
        first = dp(x.astype(np.float32))
        procs = list(dp._workers.procs)
        net.double()
        out = dp(x)
        assert out.dtype == np.float64 and dp._workers.procs != procs
        np.testing.assert_allclose(out.data, net(tg.Tensor(x)).data, rtol=1e-12)
        np.testing.assert_allclose(first.data, out.data, rtol=1e-5, atol=1e-6)
        workers = dp._workers.procs
        dp.close()
        assert dp._workers is None and not any(p.is_alive() for p in workers)


def test_state_dict_repr_and_argument_errors():
    net = nn.Linear(3, 2)
    dp = nn.DataParallel(net, workers=2)
    assert list(dp.state_dict()) == ["module.weight", "module.bias"]
    assert "workers=2" in repr(dp) and "Linear" in repr(dp)
    assert nn.DataParallel(net).workers == tg.get_num_threads()
    with pytest.raises(ValueError, match="workers"):
        nn.DataParallel(net, workers=0)
    with pytest.raises(TypeError, match="module"):
        nn.DataParallel(lambda x: x)
    with pytest.raises(ValueError, match="batch axis"):
        dp(tg.tensor(1.0))
    dp.close()


def test_a_killed_worker_is_reported_and_replaced_at_the_next_call(small):
    dp, x, first = small
    proc = dp._workers.procs[0]
    proc.kill()
    proc.join(5)
    with pytest.raises(RuntimeError, match="worker 1 died"):
        dp(x)
    np.testing.assert_array_equal(dp(x).data, first)  # a new worker took over
    assert dp._workers.procs[0] is not proc and dp._workers.procs[0].is_alive()


@pytest.mark.parametrize(
    "owner, name", [("module", "_receive"), ("channel", "send")], ids=["wait", "send"]
)
def test_an_interrupt_restarts_the_workers_at_the_next_call(small, monkeypatch, owner, name):
    """Ctrl-C while waiting for an answer (which would then come out of turn), or while
    sending (a worker could hold half of a large message)."""
    from tinygrad_np.nn import parallel

    dp, x, first = small
    target = parallel if owner == "module" else parallel._Channel
    real = getattr(target, name)

    def interrupted(*args):
        monkeypatch.setattr(target, name, real)
        raise KeyboardInterrupt  # as Ctrl-C there

    monkeypatch.setattr(target, name, interrupted)
    old = dp._workers
    with pytest.raises(KeyboardInterrupt):
        dp(x)
    np.testing.assert_array_equal(dp(x).data, first)
    assert dp._workers is not old


def test_parameters_assigned_anew_reach_the_workers():
    net, twin = _pair()
    with nn.DataParallel(net, workers=2) as dp:
        x = _batch(6)[0]
        dp(x)
        for p, q in zip(net.parameters(), twin.parameters(), strict=True):
            p.data = p.data * 0.5  # a new array, not an in-place update
            q.data = q.data * 0.5
        np.testing.assert_allclose(dp(x).data, twin(tg.Tensor(x)).data, rtol=1e-12)
        # in-place updates reach them too, through arrays held from before the first call
        held = [p.data for p in net.parameters()]
        for a, q in zip(held, twin.parameters(), strict=True):
            a -= 0.1
            q.data -= 0.1
        np.testing.assert_allclose(dp(x).data, twin(tg.Tensor(x)).data, rtol=1e-12)
        assert all(p.data is a for p, a in zip(net.parameters(), held, strict=True))


def test_buffers_updated_in_a_worker_do_not_reach_this_process():
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    twin = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    twin.load_state_dict(net.state_dict())
    with nn.DataParallel(net, workers=2) as dp:
        x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
        dp(x)
        twin(tg.Tensor(x[:4]))  # this process's shard only, as torch.nn.DataParallel
        for name in ("running_mean", "running_var"):
            got, want = getattr(net[1], name).data, getattr(twin[1], name).data
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
        dp(x)  # the workers start the next call from this process's buffers
        twin(tg.Tensor(x[:4]))
        np.testing.assert_allclose(net[1].running_mean.data, twin[1].running_mean.data)


def test_our_thread_pool_is_stopped_before_the_fork():
    from tinygrad_np import _parallel as par

    par._pool(1)  # as after a threaded conv or pool
    assert par._state["pool"] is not None
    with nn.DataParallel(nn.Sequential(nn.Linear(3, 2)), workers=2) as dp:
        dp(tg.randn(4, 3))
        assert dp._workers is not None
        assert par._state["pool"] is None  # no thread of ours was running at the fork


def test_backward_of_an_older_call_is_refused_not_mixed_up():
    net, twin = _pair()
    with nn.DataParallel(net, workers=2) as dp:
        x1, y1 = _batch(4, seed=1)
        x2, _ = _batch(4, seed=2)
        first = F.cross_entropy(dp(x1), y1)
        dp(x2)  # the workers now hold this call's graph
        with pytest.raises(RuntimeError, match="latest call"):
            first.backward()
        out = dp(x1)  # the usual order works again
        F.cross_entropy(out, y1).backward()
        F.cross_entropy(twin(tg.Tensor(x1)), y1).backward()
        for p, q in zip(net.parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=1e-10, atol=1e-12)
        late = dp(x1).sum()
    with pytest.raises(RuntimeError, match="close"):
        late.backward()


def test_a_shard_larger_than_the_first_calls_goes_through_the_pipe():
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    with nn.DataParallel(net, workers=2) as dp:
        dp(tg.randn(4, 3))  # the inboxes are sized for 2-row shards
        x = tg.randn(20, 3)
        np.testing.assert_allclose(dp(x).data, net(x).data, rtol=1e-6)
        assert 10 * x.data[:1].nbytes > len(dp._workers.inboxes[0])


def _gone(pid: int) -> bool:
    """The process has exited (a zombie counts: nobody may reap it here)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc to watch the worker")
def test_workers_exit_when_their_parent_dies_without_closing_them():
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, tinygrad_np as tg\n"
        "from tinygrad_np import nn\n"
        "dp = nn.DataParallel(nn.Sequential(nn.Linear(3, 2)), workers=2)\n"
        "dp(tg.randn(4, 3))\n"
        "print(dp._workers.procs[0].pid, flush=True)\n"
        "os._exit(0)  # no close(), no exit handlers: as a killed process\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(pid), "the orphaned worker kept running"


def test_a_large_output_goes_through_the_pipe():
    from tinygrad_np.nn import parallel

    tg.manual_seed(0)
    rows = parallel.MAILBOX_BYTES // 8 // 100 + 1  # float64: one shard's output over 1 MiB
    net = nn.Sequential(nn.Linear(3, 100)).to(np.float64)
    with nn.DataParallel(net, workers=2) as dp:
        x = tg.randn(2 * rows, 3, dtype=np.float64, requires_grad=True)
        out = dp(x)
        np.testing.assert_allclose(out.data, net(x).data, rtol=1e-12)
        out.sum().backward()
        want = tg.Tensor(x.data, requires_grad=True)
        net(want).sum().backward()
        np.testing.assert_allclose(x.grad.data, want.grad.data, rtol=1e-12)


def test_the_one_walk_lists_modules_parameters_and_buffers_as_the_module_does():
    from tinygrad_np.nn.parallel import _members

    shared = nn.Linear(3, 3)
    net = nn.Sequential(LeNet5(), shared, nn.Sequential(shared, nn.BatchNorm1d(3)))
    net.add_module("absent", None)
    modules, params, buffers = _members(net)
    assert modules == list(net.modules())
    assert [id(p) for p in params] == [id(p) for p in net.parameters()]
    assert [id(b) for b in buffers] == [id(b) for b in net.buffers()]

    class Chosen(nn.Module):  # lists its own parameters: the walk must ask it
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(2, 2)
            self.extra = nn.Parameter(np.zeros(2))

        def parameters(self, recurse: bool = True):
            return iter([self.extra])

    chosen = Chosen()
    for root in (chosen, nn.Sequential(chosen)):  # (a child's override is not called)
        assert [id(p) for p in _members(root)[1]] == [id(p) for p in root.parameters()]
    assert _members(chosen)[1] == [chosen.extra]


def test_a_forked_copy_starts_its_own_workers_and_leaves_the_owners_alone(small):
    dp, x, first = small
    owners = list(dp._workers.procs)
    pid = os.fork()
    if pid == 0:  # the child: its own workers give the same values; closing them (as its
        code = 1  # exit would) must not stop the parent's
        try:
            ok = np.array_equal(dp(x).data, first) and dp._workers.procs != owners
            dp.close()
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert dp._workers.procs == owners and all(p.is_alive() for p in owners)
    np.testing.assert_array_equal(dp(x).data, first)


class _FailsOnceInAWorkersBackward(tg.autograd.Op):
    """y = x; the VJP raises the first time it runs in the first worker process."""

    calls = 0

    def forward(self, x):
        return x.copy()

    def vjp(self, g):
        if mp.current_process().name.endswith("DataParallel-1"):
            type(self).calls += 1
            if type(self).calls == 1:
                raise ValueError("boom in a worker's backward")
        return (g,)


class _MidBackwardFailure(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.last = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.last(_FailsOnceInAWorkersBackward.apply(self.first(x)))


@pytest.mark.parametrize("workers", [2, 3])
def test_a_worker_failing_mid_backward_is_raised_and_the_next_step_is_right(workers):
    """The failing worker has already handed on the last layer's gradients when it fails;
    with 3 processes the other worker's answer is read too, so the next step is in step."""
    tg.manual_seed(0)
    net = _MidBackwardFailure().double()
    twin = _MidBackwardFailure().double()
    twin.load_state_dict(net.state_dict())
    x = tg.randn(6, 3, dtype=np.float64)
    xa, xb = (tg.Tensor(x.data, requires_grad=True) for _ in range(2))
    with nn.DataParallel(net, workers=workers) as dp:
        with pytest.raises(RuntimeError, match=r"worker 1 failed:(.|\n)*boom in a worker's"):
            dp(x).sum().backward()
        procs = list(dp._workers.procs)
        net.zero_grad()
        for _ in range(2):
            ya, yb = dp(xa), twin(xb)
            np.testing.assert_allclose(ya.data, yb.data, rtol=1e-12)
            (ya * ya).sum().backward()
            (yb * yb).sum().backward()
        assert dp._workers.procs == procs  # the same workers, still in step
        np.testing.assert_allclose(xa.grad.data, xb.grad.data, rtol=1e-12)
        for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
            np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=1e-12, err_msg=name)


def test_workers_hand_on_the_last_layers_gradients_first():
    """A worker writes each parameter gradient to its block as soon as it is final, so
    this process can add the last layers' while the worker computes the first layers'."""
    tg.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with nn.DataParallel(net, workers=2) as dp:
        dp(tg.randn(4, 3)).sum().backward()
        order = list(dp._workers.grads[0].arrays[-1])
    # parameters 0-1: the first Linear's weight and bias; 4-5: the last one's
    assert sorted(order[:6]) == list(range(6)) and order[6] == -1
    assert max(order.index(4), order.index(5)) < min(order.index(0), order.index(1))


def test_parameter_hooks_run_once_and_shared_weights_sum_both_uses():
    """As the unsplit module: a parameter's hook sees the whole batch's gradient once
    (not once per shard and again on the total), and a layer used twice gets both uses'
    gradients before a worker hands them on."""

    def make():
        tg.manual_seed(0)
        lin = nn.Linear(3, 3).double()
        net = nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(3, 2).double())
        seen = []
        lin.weight.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 10.0)
        return net, seen

    (net, seen), (twin, twin_seen) = make(), make()
    x = tg.randn(6, 3, dtype=np.float64)
    with nn.DataParallel(net, workers=2) as dp:
        (dp(x) ** 2).sum().backward()
    (twin(x) ** 2).sum().backward()
    assert len(seen) == len(twin_seen) == 1
    np.testing.assert_allclose(seen[0], twin_seen[0], rtol=1e-12)
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=1e-12, err_msg=name)


class _WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def test_a_parameter_no_shard_uses_gets_no_gradient_as_unsplit():
    tg.manual_seed(0)
    net = _WithUnused()
    with nn.DataParallel(net, workers=3) as dp:
        dp(tg.randn(5, 3)).sum().backward()
    assert net.unused.weight.grad is None and net.unused.bias.grad is None
    assert net.used.weight.grad is not None


class _TwoLeavesOneGradient(nn.Module):
    """y = x @ (a + b): the Add hands a and b one and the same gradient array."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(tg.randn(3, 2, dtype=np.float64))
        self.b = nn.Parameter(tg.randn(3, 2, dtype=np.float64))

    def forward(self, x):
        return x @ (self.a + self.b)


def test_gradients_this_process_shares_are_not_added_into_in_place():
    """This process adds the workers' gradients into its own where nothing else holds
    them; two parameters given one array must each get the sum once."""
    tg.manual_seed(0)
    net, twin = _TwoLeavesOneGradient(), _TwoLeavesOneGradient()
    twin.load_state_dict(net.state_dict())
    x = tg.randn(5, 3, dtype=np.float64)
    with nn.DataParallel(net, workers=3) as dp:
        (dp(x) ** 2).sum().backward()
    (twin(x) ** 2).sum().backward()
    for name in ("a", "b"):
        got, want = getattr(net, name).grad.data, getattr(twin, name).grad.data
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    assert not np.shares_memory(net.a.grad.data, net.b.grad.data)


def test_an_interrupt_while_adding_the_gradients_restarts_the_workers(monkeypatch):
    """Ctrl-C while this process adds a worker's gradients (announcements still unread):
    the next call starts fresh workers, and its gradients are right."""
    from tinygrad_np.nn import parallel

    net, twin = _pair()
    x, y = _batch(6)
    real = parallel._Workers.published

    def interrupted(self, i):
        monkeypatch.setattr(parallel._Workers, "published", real)
        it = real(self, i)
        yield next(it)
        raise KeyboardInterrupt  # as Ctrl-C there

    with nn.DataParallel(net, workers=2) as dp:
        dp(x)  # workers started
        old = dp._workers
        monkeypatch.setattr(parallel._Workers, "published", interrupted)
        with pytest.raises(KeyboardInterrupt):
            F.cross_entropy(dp(x), y).backward()
        net.zero_grad()
        F.cross_entropy(dp(x), y).backward()
        assert dp._workers is not old
    F.cross_entropy(twin(tg.Tensor(x)), y).backward()
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        np.testing.assert_allclose(p.grad.data, q.grad.data, rtol=1e-10, err_msg=name)


class _FailsOnRows(nn.Module):
    """Raises in the forward for a shard that holds the marked rows (a worker's only)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        if (x.data[:, 0] == 99.0).any():
            raise ValueError("marked rows")
        return self.lin(x)


def test_an_error_in_one_workers_forward_leaves_the_next_calls_right():
    module = _FailsOnRows()
    rng = np.random.default_rng(0)
    with nn.DataParallel(module, workers=3) as dp:
        bad = rng.standard_normal((6, 3)).astype(np.float32)
        bad[2:4, 0] = 99.0  # worker 1's rows, not the last worker's
        with pytest.raises(RuntimeError, match="worker 1 failed"):
            dp(tg.Tensor(bad))
        for _ in range(3):
            x = tg.Tensor(rng.standard_normal((6, 3)).astype(np.float32))
            y = dp(x)
            assert np.allclose(y.data, module(x).data)
            y.sum().backward()


def test_a_second_backward_and_an_output_without_the_batch_axis_raise_clearly():
    class Mean(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(x).mean(0, keepdim=True)

    with nn.DataParallel(nn.Linear(3, 2), workers=2) as dp:
        y = dp(tg.randn(4, 3))
        y.sum().backward(retain_graph=True)
        with pytest.raises(RuntimeError, match="second backward"):
            y.sum().backward()
    with nn.DataParallel(Mean(), workers=2) as dp:
        with pytest.raises(ValueError, match="batch axis first"):
            dp(tg.randn(4, 3))
