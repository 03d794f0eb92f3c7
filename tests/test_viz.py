"""viz: real SVGs rendered by Graphviz's dot, parsed as XML and checked node by node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np import nn, viz
from tinygrad_np.models import LeNet5

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(
    subprocess.run(["which", "dot"], capture_output=True).returncode != 0,
    reason="Graphviz's dot is not installed",
)


def _numbers(s: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", s)]


def parse_svg(path: Path) -> dict:
    """Nodes (title -> texts, text positions), edges (src, dst, texts), clusters (label, box)."""
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    nodes, edges, clusters = {}, [], []
    for g in root.iter(SVG + "g"):
        kind = g.get("class")
        title_el = g.find(SVG + "title")
        if title_el is None or kind not in ("node", "edge", "cluster"):
            continue
        title = title_el.text
        texts = [t.text for t in g.findall(SVG + "text")]
        if kind == "node":
            pos = [(float(t.get("x")), float(t.get("y"))) for t in g.findall(SVG + "text")]
            nodes[title] = {"texts": texts, "pos": pos}
        elif kind == "edge":
            src, dst = title.split("->")
            edges.append((src, dst, texts))
        else:
            shape = g.find(SVG + "path")
            pts = _numbers(
                shape.get("d") if shape is not None else g.find(SVG + "polygon").get("points")
            )
            xs, ys = pts[0::2], pts[1::2]
            box = (min(xs), min(ys), max(xs), max(ys))
            clusters.append({"label": " ".join(texts), "box": box})
    return {"nodes": nodes, "edges": edges, "clusters": clusters}


def node_with(svg: dict, text: str) -> str:
    """The title of the one node that has a text line equal to ``text``."""
    found = [k for k, n in svg["nodes"].items() if text in n["texts"]]
    assert len(found) == 1, f"{text!r} in {len(found)} nodes: {svg['nodes']}"
    return found[0]


def nodes_with(svg: dict, text: str) -> list[str]:
    return [k for k, n in svg["nodes"].items() if text in n["texts"]]


def inside(svg: dict, node: str, cluster_label: str) -> bool:
    (cl,) = [c for c in svg["clusters"] if c["label"] == cluster_label]
    x0, y0, x1, y1 = cl["box"]
    return all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in svg["nodes"][node]["pos"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.features(x))


def deep_mlp(layers: int = 20, width: int = 32) -> nn.Sequential:
    mods = []
    for _ in range(layers):
        mods += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*mods)


# ----------------------------------------------------------------------------- forward


@needs_dot
def test_module_graph_has_ops_named_leaves_clusters_and_shape_edges(tmp_path):
    tg.manual_seed(0)
    net = Net()
    x = tg.randn(2, 4)
    out = viz.draw_graph(net(x), path=tmp_path / "net.svg")
    assert out == tmp_path / "net.svg" and isinstance(out, Path)
    svg = parse_svg(out)

    linears = nodes_with(svg, "linear")
    assert len(linears) == 2
    relu = node_with(svg, "relu")
    w0 = node_with(svg, "features.0.weight")
    b0 = node_with(svg, "features.0.bias")
    wh = node_with(svg, "head.weight")
    inp = node_with(svg, "input")
    assert "(8, 4)" in svg["nodes"][w0]["texts"]
    assert "(3, 8)" in svg["nodes"][wh]["texts"]

    edges = {(s, d): texts for s, d, texts in svg["edges"]}
    (lin0,) = [n for n in linears if (w0, n) in edges]
    (lin1,) = [n for n in linears if (wh, n) in edges]
    assert edges[(inp, lin0)] == [" (2, 4) float32"]
    assert edges[(w0, lin0)] == [" (8, 4) float32"]
    assert edges[(b0, lin0)] == [" (8,) float32"]
    assert edges[(lin0, relu)] == [" (2, 8) float32"]
    assert edges[(relu, lin1)] == [" (2, 8) float32"]
    out_node = node_with(svg, "output")
    assert edges[(lin1, out_node)] == [" (2, 3) float32"]
    assert len(svg["edges"]) == 8  # x, w0, b0 -> lin0 -> relu; relu, wh, bh -> lin1 -> out

    labels = {c["label"] for c in svg["clusters"]}
    assert labels == {"Net", "features · Sequential", "features.0 · Linear",
                      "features.1 · ReLU", "head · Linear"}  # fmt: skip
    assert inside(svg, lin0, "features.0 · Linear") and inside(svg, w0, "features.0 · Linear")
    assert inside(svg, lin0, "features · Sequential") and inside(svg, lin0, "Net")
    assert inside(svg, relu, "features.1 · ReLU")
    assert not inside(svg, lin1, "features · Sequential")
    assert not inside(svg, inp, "Net")


@needs_dot
def test_op_arguments_are_shown_and_big_ones_summarised(tmp_path):
    x = tg.randn(4, 50, requires_grad=True)
    idx = np.arange(50)[::-1].copy()
    y = F.leaky_relu(x, negative_slope=0.2).softmax(dim=1)[:, idx].sum(dim=1)
    svg = parse_svg(viz.draw_graph(y, path=tmp_path / "args.svg"))
    texts = {k: n["texts"] for k, n in svg["nodes"].items()}
    assert texts[node_with(svg, "leaky_relu")][1:] == ["negative_slope=0.2"]
    assert texts[node_with(svg, "softmax")][1:] == ["dim=1"]
    assert texts[node_with(svg, "index")][1:] == ["key=[:, int64[50]]"]  # not 50 numbers
    assert texts[node_with(svg, "sum")][1:] == ["dim=(1,)", "keepdim=False"]
    assert texts[node_with(svg, "tensor")] == ["tensor", "(4, 50)"]


def test_leaf_names_fall_back_to_tensor_name_and_constants_show_their_value():
    a = tg.randn(3, requires_grad=True)
    a.name = "alpha"
    b = tg.randn(3)
    dot = viz.to_dot(a * b * 2.5)
    assert re.search(r"t\d+ \[label=<alpha<br/>", dot.source)
    assert re.search(r"t\d+ \[label=<input<br/>", dot.source)
    assert re.search(r"t\d+ \[label=<2\.5>", dot.source)
    dot = viz.to_dot(a * b, show_shapes=False)
    assert "float32" not in dot.source and "(3,)" not in dot.source


@needs_dot
def test_show_grads_gives_each_gradient_shape_and_norm(tmp_path):
    tg.manual_seed(1)
    net = Net()
    h = net.features(tg.randn(5, 4))
    h.retain_grad()
    loss = F.cross_entropy(net.head(h), np.array([0, 1, 2, 0, 1]))
    loss.backward()
    # two separate calls (features, head): module=net names parameters from the top
    svg = parse_svg(viz.draw_graph(loss, path=tmp_path / "g.svg", show_grads=True, module=net))
    w = node_with(svg, "features.0.weight")
    norm = float(np.linalg.norm(net.features[0].weight.grad.data))
    assert f"grad (8, 4) ‖g‖={norm:.4g}" in svg["nodes"][w]["texts"]
    relu = node_with(svg, "relu")  # h is relu's output and kept its grad
    hnorm = float(np.linalg.norm(h.grad.data))
    assert f"grad (5, 8) ‖g‖={hnorm:.4g}" in svg["nodes"][relu]["texts"]
    assert "no grad" in svg["nodes"][node_with(svg, "input")]["texts"]


def test_jupyter_displays_the_digraph_inline():
    dot = viz.to_dot(tg.randn(2, 2, requires_grad=True).relu())
    bundle = dot._repr_mimebundle_()
    assert "<svg" in bundle["image/svg+xml"] and "relu" in bundle["image/svg+xml"]


def test_import_tinygrad_np_does_not_import_graphviz():
    code = "import sys, tinygrad_np; assert 'graphviz' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ----------------------------------------------------------------------------- formats, errors


@needs_dot
def test_format_comes_from_the_suffix_or_the_argument(tmp_path):
    y = (tg.randn(3, requires_grad=True) * 2).sum()
    assert viz.draw_graph(y, path=tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert viz.draw_graph(y, path=tmp_path / "a.pdf").read_bytes()[:4] == b"%PDF"
    p = viz.draw_graph(y, path=tmp_path / "plain", format="svg")
    assert p == tmp_path / "plain" and p.read_text().lstrip().startswith("<?xml")
    assert viz.draw_graph(y, path=tmp_path / "a.dot").read_text().startswith("digraph")
    with pytest.raises(ValueError, match="unknown format 'jpeg2'"):
        viz.draw_graph(y, path=tmp_path / "a.jpeg2")


def test_without_dot_the_source_is_written_and_the_error_says_how_to_install(tmp_path, monkeypatch):
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    y = (tg.randn(3, requires_grad=True) * 2).sum()
    with pytest.raises(viz.GraphvizNotFoundError) as info:
        viz.draw_graph(y, path=tmp_path / "out" / "g.svg")
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    for hint in ("apt install graphviz", "brew install graphviz", "conda install graphviz"):
        assert hint in msg
    src = tmp_path / "out" / "g.dot"
    assert str(src) in msg
    assert src.read_text().startswith("digraph") and "mul" in src.read_text()
    assert not (tmp_path / "out" / "g.svg").exists()
    assert os.environ["PATH"] == str(empty)


# ----------------------------------------------------------------------------- backward graph


@needs_dot
def test_backward_graph_shows_the_vjp_ops(tmp_path):
    tg.manual_seed(2)
    x = tg.randn(4, 3)
    w = tg.randn(3, 5, requires_grad=True)
    w.name = "w"
    y = (x @ w).relu().sum()
    path = viz.draw_backward(y, w, path=tmp_path / "bwd.svg")
    svg = parse_svg(path)
    assert w.grad is None  # nothing accumulated
    gout = node_with(svg, "grad_output")
    gw = node_with(svg, "grad w")
    assert "(3, 5)" in svg["nodes"][gw]["texts"]
    # relu's VJP masks g (mul by a saved mask), then matmul's gives x^T @ g
    assert nodes_with(svg, "saved") and nodes_with(svg, "matmul")
    into_gw = [s for s, d, _ in svg["edges"] if d == gw]
    assert len(into_gw) == 1 and svg["nodes"][into_gw[0]]["texts"][0] == "matmul"
    reach, frontier = set(), [gout]
    while frontier:  # grad_output reaches the gradient through recorded ops
        n = frontier.pop()
        reach.add(n)
        frontier += [d for s, d, _ in svg["edges"] if s == n and d not in reach]
    assert gw in reach


@needs_dot
def test_create_graph_gradient_can_be_drawn_directly(tmp_path):
    x = tg.Tensor([0.5, -1.0, 2.0], requires_grad=True)
    (x.tanh() * x).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None
    svg = parse_svg(viz.draw_graph(x.grad, path=tmp_path / "xgrad.svg"))
    titles = {n["texts"][0] for n in svg["nodes"].values()}
    assert {"tanh", "mul", "add"} <= titles
    assert node_with(svg, "tensor")  # x itself appears: the gradient depends on it


# ----------------------------------------------------------------------------- collapse, speed


@needs_dot
def test_collapse_folds_repeated_blocks_into_one_node_with_a_count(tmp_path):
    tg.manual_seed(3)
    net = deep_mlp(20, 16)
    y = net(tg.randn(2, 16))
    svg = parse_svg(viz.draw_graph(y, path=tmp_path / "c.svg", collapse=True))
    grp = node_with(svg, "20 × [Linear → ReLU]")
    texts = svg["nodes"][grp]["texts"]
    assert "0 … 39" in texts and "40 parameter tensors" in texts
    assert not nodes_with(svg, "linear") and not nodes_with(svg, "0.weight")
    edges = {(s, d): t for s, d, t in svg["edges"]}
    assert edges[(node_with(svg, "input"), grp)] == [" (2, 16) float32"]
    assert edges[(grp, node_with(svg, "output"))] == [" (2, 16) float32"]

    full = parse_svg(viz.draw_graph(y, path=tmp_path / "f.svg"))
    assert len(nodes_with(full, "linear")) == 20 and len(nodes_with(full, "relu")) == 20


def test_collapse_keeps_different_blocks_apart():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))  # fmt: skip
    src = viz.to_dot(net(tg.randn(1, 4)), collapse=True).source
    assert "2 × [Linear → ReLU]" in src  # 2..5; the first (4 -> 8) and last differ
    assert "0.weight" in src and "6.weight" in src and "2.weight" not in src


@needs_dot
def test_collapse_folds_long_elementwise_chains(tmp_path):
    a = tg.randn(3, requires_grad=True)
    a.name = "a"
    y = ((a * 2).exp() + 1).tanh().sum()
    svg = parse_svg(viz.draw_graph(y, path=tmp_path / "chain.svg", collapse=True))
    chain = node_with(svg, "4 elementwise ops")
    assert "mul → exp → add → tanh" in svg["nodes"][chain]["texts"]
    edges = {(s, d) for s, d, _ in svg["edges"]}
    assert (node_with(svg, "a"), chain) in edges and (chain, node_with(svg, "sum")) in edges
    short = viz.to_dot((a * 2).exp().sum(), collapse=True).source  # 2 ops: left alone
    assert "elementwise" not in short


@needs_dot
@pytest.mark.parametrize("collapse", [False, True])
def test_a_20_layer_network_renders_in_under_two_seconds(tmp_path, collapse):
    tg.manual_seed(4)
    net = deep_mlp(20, 32)
    y = net(tg.randn(8, 32))
    start = time.perf_counter()
    path = viz.draw_graph(y, path=tmp_path / "deep.svg", collapse=collapse)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert len(parse_svg(path)["nodes"]) >= (3 if collapse else 80)


# ----------------------------------------------------------------------------- CLI entry


@needs_dot
@pytest.mark.parametrize("backward", [False, True])
def test_graph_command_draws_a_model(tmp_path, backward):
    tg.manual_seed(5)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    out = viz.graph_command(mlp, tmp_path / "mlp.svg", backward=backward)
    svg = parse_svg(out)
    if backward:
        assert node_with(svg, "grad 1.weight") and node_with(svg, "grad 3.bias")
        assert node_with(svg, "grad_output")
    else:
        assert node_with(svg, "1.weight") and node_with(svg, "input")
        assert {c["label"] for c in svg["clusters"]} >= {"Sequential", "1 · Linear"}


# ----------------------------------------------------------------------------- conv networks


@needs_dot
def test_lenet_forward_graph(tmp_path):
    tg.manual_seed(6)
    net = LeNet5()
    svg = parse_svg(viz.draw_graph(net(tg.randn(1, 1, 28, 28)), path=tmp_path / "lenet.svg"))
    convs = nodes_with(svg, "conv2d")
    assert len(convs) == 2 and len(nodes_with(svg, "max_pool2d")) == 2
    w0 = node_with(svg, "features.0.weight")
    assert "(6, 1, 5, 5)" in svg["nodes"][w0]["texts"]
    (c0,) = [c for c in convs if any(s == w0 and d == c for s, d, _ in svg["edges"])]
    assert "padding=((2,2), (2,2))" in svg["nodes"][c0]["texts"]
    assert "kernel_size=(5, 5)" in svg["nodes"][c0]["texts"]
    pool = nodes_with(svg, "max_pool2d")[0]
    assert "kernel_size=(2, 2)" in svg["nodes"][pool]["texts"]
    assert inside(svg, c0, "features.0 · Conv2d")
    labels = {c["label"] for c in svg["clusters"]}
    assert {"LeNet5", "features · Sequential", "classifier · Sequential"} <= labels
    assert "features.2 · MaxPool2d" in labels and "classifier.0 · Linear" in labels
    edges = {(s, d): t for s, d, t in svg["edges"]}
    assert edges[(node_with(svg, "input"), c0)] == [" (1, 1, 28, 28) float32"]


@needs_dot
def test_strided_conv_backward_graph_names_its_steps(tmp_path):
    conv2d = F.conv2d
    tg.manual_seed(7)
    x = tg.randn(1, 1, 6, 6, requires_grad=True)
    x.name = "x"
    w = tg.randn(1, 1, 3, 3, requires_grad=True)
    w.name = "w"
    y = conv2d(x, w, stride=2, padding=1)  # (1, 1, 3, 3)
    svg = parse_svg(viz.draw_backward(y, [x, w], path=tmp_path / "conv_bwd.svg"))
    nodes, edges = svg["nodes"], {(s, d): t for s, d, t in svg["edges"]}

    def producer(n: str) -> str:
        (src,) = [s for s, d in edges if d == n and nodes[s]["texts"][0] not in ("w", "x")]
        return src

    gx = node_with(svg, "grad x")
    assert "(1, 1, 6, 6)" in nodes[gx]["texts"]
    corr = producer(gx)  # correlation of the padded, dilated g with the flipped kernel
    assert nodes[corr]["texts"][:2] == ["conv2d", "stride=(1, 1)"]
    assert edges[(corr, gx)] == [" (1, 1, 6, 6) float32"]
    pad = [s for s, d in edges if d == corr and nodes[s]["texts"][0] == "pad"][0]
    # 3x3 dilated by 2 -> 5x5; padded by d*(K-1) - p = 1 in front, to 6 + 2 = 8 long
    assert "pad_width=((0,0), (0,0), (1,2), (1,2))" in nodes[pad]["texts"]
    assert edges[(pad, corr)] == [" (1, 1, 8, 8) float32"]
    dil = producer(pad)
    assert nodes[dil]["texts"] == ["dilate", "stride=(2, 2)"]
    assert edges[(dil, pad)] == [" (1, 1, 5, 5) float32"]
    assert producer(dil) == node_with(svg, "grad_output")
    flipped = [s for s, d in edges if d == corr and s != pad][0]
    assert nodes[flipped]["texts"] == ["flip_kernel", "groups=1"]  # one node: the kernel, reversed
    assert (node_with(svg, "w"), flipped) in edges
    gw = node_with(svg, "grad w")
    assert nodes[producer(gw)]["texts"][0] == "conv2d_weight_grad"


# ----------------------------------------------------------------------------- example


@needs_dot
def test_draw_graph_example_writes_both_pictures(tmp_path):
    script = ROOT / "examples" / "draw_graph.py"
    r = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--steps", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    for name in ("lenet_forward.svg", "conv_backward.svg"):
        svg = parse_svg(tmp_path / name)
        assert len(svg["nodes"]) > 5


def test_conv_and_pool_names_survive_a_backward():
    x = tg.randn(1, 1, 8, 8, requires_grad=True)
    w = tg.randn(2, 1, 3, 3, requires_grad=True)
    y = F.max_pool2d(F.conv2d(x, w), 2).sum()
    y.backward()
    src = viz.to_dot(y, show_grads=True).source
    assert "<b>conv2d</b>" in src and "<b>max_pool2d</b>" in src


def test_a_tensor_used_by_many_ops_is_drawn_at_each_use_and_lays_out_fast(tmp_path):
    h = tg.randn(4, 8, requires_grad=True)
    w = tg.randn(8, 8, requires_grad=True)
    for _ in range(80):  # one weight, 80 uses (dot needed over 40 s for one shared node)
        h = (h @ w).tanh()
    dot = viz.to_dot(h.sum())
    assert dot.source.count("drawn at each of its 80 uses") == 80
    if shutil.which("dot"):
        t0 = time.perf_counter()
        viz.draw_graph(h.sum(), path=tmp_path / "g.svg")
        assert time.perf_counter() - t0 < 20


def test_drawing_a_graph_leaves_no_reference_cycle_holding_it():
    import gc

    from tinygrad_np.autograd import Op

    def ops() -> int:
        return sum(issubclass(type(o), Op) for o in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = ops()
        x = tg.randn(4, 3, requires_grad=True)
        y = (x * 2).tanh().sum()
        viz.to_dot(y)
        del y
        after = ops()
    finally:
        gc.enable()
    assert after == before  # freed by reference counting, without the cycle collector


@needs_dot
def test_names_show_as_written_whatever_their_characters(tmp_path):
    # Graphviz reads "\N", "\G", "\l" in a label (HTML-like ones too), decodes entities, and
    # fails on control characters; module paths, parameter names and the title are shown
    # as written (a control character as a visible \xNN)
    names = ["x\\Ny", "grad\\G", "C:\\runs\\", "a\\b", "fwd &amp; bwd", "<b>&\"{|}'", "ütf ✓"]
    for name in names:
        tg.manual_seed(0)
        net = nn.Sequential(OrderedDict([(name.replace(".", "_"), nn.Linear(2, 1))]))
        x = tg.randn(3, 2)
        x.name = name
        path = viz.draw_graph(net(x).sum(), path=tmp_path / "g.svg", title=name)
        texts = ["".join(t.itertext()) for t in ET.parse(path).getroot().iter(SVG + "text")]
        assert texts.count(name) == 2, (name, texts)  # the input and the title
        assert f"{name} · Linear" in texts  # the cluster
        assert f"{name}.weight" in texts and f"{name}.bias" in texts
    t = tg.randn(2, requires_grad=True)
    t.name = "ctl\x01 tab\there"
    path = viz.draw_graph((t * 2).sum(), path=tmp_path / "c.svg")
    texts = ["".join(x.itertext()) for x in ET.parse(path).getroot().iter(SVG + "text")]
    assert "ctl\\x01 tab here" in texts


def test_collapsing_a_long_graph_of_plain_ops_takes_linear_time():
    def graph(n):
        y = tg.randn(4, requires_grad=True)
        for _ in range(n):
            y = y * 0.5 + 1.0
        return y.sum()

    small, large = graph(1000), graph(4000)
    times = []
    for out in (small, large):
        t0 = time.perf_counter()
        viz.to_dot(out, collapse=True)
        times.append(time.perf_counter() - t0)
    assert times[1] < 10 * times[0] + 0.5  # (it was 13x for 4x the ops: 0.6 -> 8 s)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_nodes_show_the_kernel_size_and_output_padding(nd):
    """API.md: op nodes show their arguments, kernel size among them. A transposed conv's
    node showed its bookkeeping input_size (the output's size) and hid kernel_size and
    output_padding behind "+2 more"."""
    x = tg.randn(1, 2, *(4,) * nd)
    w = tg.randn(2, 3, *(3,) * nd, requires_grad=True)
    y = getattr(F, f"conv_transpose{nd}d")(x, w, stride=2, padding=1, output_padding=1)
    src = viz.to_dot(y).source
    assert "kernel_size=" in src and "output_padding=" in src
    assert "input_size" not in src and "more" not in src
