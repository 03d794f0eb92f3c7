"""Autograd in five small steps: gradients, accumulation, no_grad, grad(), a fitted line.

python examples/autograd_basics.py            # 200 gradient-descent steps
python examples/autograd_basics.py --steps 5  # a smoke run
"""

import argparse

import numpy as np

import tinygrad_np as tg

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--steps", type=int, default=200, help="gradient-descent steps")
args = parser.parse_args()

# 1. Tensors that require grad record the operations applied to them; backward() fills .grad.
x = tg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
y = (x**2).sum()  # y = x1^2 + x2^2 + x3^2
y.backward()
print("d(sum x^2)/dx =", x.grad.tolist())  # 2x
assert x.grad.tolist() == [2.0, 4.0, 6.0]

# 2. Gradients accumulate until you reset them, as in PyTorch.
(3 * x).sum().backward()
print("after another backward:", x.grad.tolist())  # 2x + 3
x.grad = None

# 3. The graph: every result knows the op that made it.
z = (x * 2).relu().sum()
node, chain = z.grad_fn, []
while node is not None:  # follow the first input back to the leaf x
    chain.append(node.name)
    node = node.inputs[0].grad_fn
print("z = " + "(".join(chain) + "(x, 2" + ")" * len(chain))

# 4. no_grad() skips recording (evaluation, parameter updates); grad() returns gradients
#    instead of accumulating them.
with tg.no_grad():
    w = x * 10
print("under no_grad, requires_grad =", w.requires_grad)
(gx,) = tg.grad((x.exp() * x).sum(), [x])  # d/dx x e^x = (1 + x) e^x
np.testing.assert_allclose(gx.numpy(), (1 + x.numpy()) * np.exp(x.numpy()), rtol=1e-6)
print("d(x e^x)/dx =", ", ".join(f"{v:.4f}" for v in gx.numpy()))

# 5. Fit y = 3x - 1 by gradient descent on the mean squared error.
rng = np.random.default_rng(0)
xs = tg.Tensor(rng.uniform(-1, 1, 64).astype(np.float32))
ys = 3 * xs - 1 + tg.Tensor(0.05 * rng.standard_normal(64).astype(np.float32))
a = tg.Tensor(0.0, requires_grad=True)
b = tg.Tensor(0.0, requires_grad=True)
for step in range(1, args.steps + 1):
    loss = ((a * xs + b - ys) ** 2).mean()
    a.grad = b.grad = None
    loss.backward()
    with tg.no_grad():  # update in place, outside the graph
        a -= 0.1 * a.grad
        b -= 0.1 * b.grad
    if step % 50 == 0 or step == args.steps:
        print(f"step {step:3d}: loss {loss.item():.5f}, a = {a.item():.3f}, b = {b.item():.3f}")
if args.steps >= 200:
    assert abs(a.item() - 3) < 0.1 and abs(b.item() + 1) < 0.1
