"""Write your own convolution layer, then check its backward pass against the framework.

    python examples/check_your_conv_backward.py            # 3 random configurations
    python examples/check_your_conv_backward.py --steps 1  # one configuration

A new op is a forward in NumPy plus a VJP: given the upstream gradient g of the output,
return the gradients of the inputs. `gradcheck` compares the VJP with central finite
differences in float64; comparing with `F.conv2d` checks values and gradients against a
tested implementation. At the end, a classic mistake (flipping the kernel in the input
gradient of a cross-correlation) shows what a failing check looks like.
"""

import argparse

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np.autograd import Op
from tinygrad_np.tensor import Tensor


class MyConv2d(Op):
    """y[n, o, i, j] = sum_{c, a, b} x_padded[n, c, i*s + a, j*s + b] * w[o, c, a, b]."""

    name = "my_conv2d"
    flip_bug = False  # the deliberate mistake, switched on at the end

    def forward(self, x, w, *, stride, padding):
        p, s = padding, stride
        self.x_shape, self.w, self.s, self.p = x.shape, w, s, p
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # (N, C, H + 2p, W + 2p)
        kh, kw = w.shape[2:]
        # every kh x kw window, then keep every s-th: (N, C, Ho, Wo, kh, kw)
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
        self.win = win[:, :, ::s, ::s]
        return np.einsum("nchwab,ocab->nohw", self.win, w)  # (N, O, Ho, Wo)

    def vjp(self, g):
        g = g.numpy()  # (N, O, Ho, Wo)
        w, s, p = self.w, self.s, self.p
        kh, kw = w.shape[2:]
        ho, wo = g.shape[2:]
        gw = np.einsum("nchwab,nohw->ocab", self.win, g)  # each weight saw these windows
        # each output (i, j) read x_padded[i*s + a, j*s + b] with weight w[:, :, a, b]:
        # send g back to exactly those pixels
        n, c, h, wd = self.x_shape
        gxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), dtype=g.dtype)
        for a in range(kh):
            for b in range(kw):
                wa, wb = (kh - 1 - a, kw - 1 - b) if self.flip_bug else (a, b)
                gxp[:, :, a : a + s * ho : s, b : b + s * wo : s] += np.einsum(
                    "nohw,oc->nchw", g, w[:, :, wa, wb]
                )
        gx = gxp[:, :, p : p + h, p : p + wd]  # drop the padding's gradient
        return Tensor(gx), Tensor(gw)


def my_conv2d(x, w, stride=1, padding=0):
    return MyConv2d.apply(x, w, stride=stride, padding=padding)


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--steps", type=int, default=3, help="random configurations to check")
args = parser.parse_args()
rng = np.random.default_rng(0)

for _ in range(args.steps):
    n, c, o = rng.integers(1, 4, 3)
    k, stride, padding = rng.integers(1, 4), rng.integers(1, 3), rng.integers(0, 2)
    size = rng.integers(k + 1, 9)
    x = Tensor(rng.standard_normal((n, c, size, size)), requires_grad=True)  # float64
    w = Tensor(rng.standard_normal((o, c, k, k)), requires_grad=True)
    config = f"x {x.shape}, w {w.shape}, stride {stride}, padding {padding}"

    # 1. values against the framework
    mine = my_conv2d(x, w, stride, padding)
    ref = F.conv2d(x, w, stride=stride, padding=padding)
    np.testing.assert_allclose(mine.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)

    # 2. the VJP against finite differences
    tg.gradcheck(lambda x, w, s=stride, p=padding: my_conv2d(x, w, s, p), (x, w))

    # 3. gradients against the framework's, for a random upstream gradient
    g = rng.standard_normal(ref.shape)
    mine_gx, mine_gw = tg.grad(mine, [x, w], Tensor(g))
    ref_gx, ref_gw = tg.grad(ref, [x, w], Tensor(g))
    np.testing.assert_allclose(mine_gx.numpy(), ref_gx.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mine_gw.numpy(), ref_gw.numpy(), rtol=1e-10, atol=1e-12)
    print(f"ok  {config}")

# What a bug looks like: the input gradient of a cross-correlation must not flip the kernel
# when written as a scatter (it is flipped only when written as a convolution of g).
MyConv2d.flip_bug = True
x = Tensor(rng.standard_normal((1, 2, 5, 5)), requires_grad=True)
w = Tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
try:
    tg.gradcheck(lambda x, w: my_conv2d(x, w), (x, w))
    raise SystemExit("the planted bug was not caught")
except tg.GradcheckError as e:
    print("planted bug caught by gradcheck:")
    print("   ", str(e).splitlines()[0])

# The conformance kit does all of the above over the project's whole sweep (strides that
# leave rows over, asymmetric and SAME padding, non-square kernels; no dilation or groups
# here, since these functions do not take them) and shrinks a failure to its smallest case.
from tinygrad_np import check  # noqa: E402


def numpy_forward(x, w, b, stride, padding):
    (sh, sw), ((t, bo), (le, r)) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, r)))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
    return np.einsum("nchwab,ocab->nohw", win, w) + b[None, :, None, None]


def numpy_backward(x, w, b, dy, stride, padding):
    (sh, sw), ((t, bo), (le, r)) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (le, r)))
    kh, kw = w.shape[2:]
    ho, wo = dy.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    dw = np.einsum("nchwab,nohw->ocab", win[:, :, :ho, :wo], dy)
    dxp = np.zeros_like(xp)
    for a in range(kh):
        for c in range(kw):
            dxp[:, :, a : a + sh * ho : sh, c : c + sw * wo : sw] += np.einsum(
                "nohw,oi->nihw", dy, w[:, :, a, c]
            )
    dx = dxp[:, :, t : t + x.shape[2], le : le + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


report = check.conv(numpy_forward, numpy_backward, ndim=2)
print(f"conformance kit: {'ok' if report.ok else 'FAILED'} ({len(report.failures)} failures)")
if not report.ok:
    raise SystemExit(str(report))
