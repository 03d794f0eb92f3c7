"""Draw the graph a computation built, forward and backward, with Graphviz.

Every recorded op becomes a node labelled with its functional name and its
arguments; every leaf a node labelled with its parameter name and shape; every
edge carries the shape and dtype of the tensor that flows along it; every
Module that was being called when an op was recorded becomes a cluster.

Because the VJPs are themselves recorded ops, the gradients computed with
``create_graph=True`` are outputs of a graph too: :func:`backward_dot` and
:func:`draw_backward` draw how each gradient is computed.

The ``graphviz`` Python package is imported here only, when a graph is drawn;
rendering needs Graphviz's ``dot`` program.

>>> import tinygrad_np as tg
>>> from tinygrad_np import viz
>>> w = tg.randn(3, 4, requires_grad=True)
>>> dot = viz.to_dot((tg.randn(2, 4) @ w.T).relu())
>>> "relu" in dot.source and "matmul" in dot.source
True
"""

from __future__ import annotations

import html
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinygrad_np.autograd import Op
from tinygrad_np.autograd import grad as _autograd_grad
from tinygrad_np.tensor import Tensor

__all__ = [
    "GraphvizNotFoundError",
    "backward_dot",
    "draw_backward",
    "draw_graph",
    "graph_command",
    "render",
    "to_dot",
]

#: formats ``draw_graph`` renders with ``dot`` (plus "dot"/"gv": the source itself)
FORMATS = ("svg", "png", "pdf")

#: ops that act element by element; long chains of them collapse into one node
ELEMENTWISE = frozenset(
    "add sub mul div pow neg exp log sqrt abs clip cast relu leaky_relu sigmoid tanh erf gelu "
    "where dropout".split()
)

INSTALL_HINT = (
    "Graphviz's `dot` program was not found on PATH; it renders the graph. Install it with\n"
    "    apt install graphviz        (Debian, Ubuntu)\n"
    "    brew install graphviz       (macOS)\n"
    "    conda install graphviz      (conda)\n"
    "or see https://graphviz.org/download/. "
)

_MAX_ARGS = 6  # argument lines shown per op node
_MAX_ARG_CHARS = 48
_MIN_CHAIN = 3  # elementwise ops in a row before collapse=True folds them

# fill colours: forward ops, backward (VJP) ops, parameters, inputs, outputs, collapsed groups
_COLORS = {
    "op": "#fff2cc",
    "bwd": "#fcd5b4",
    "fwd_in_bwd": "#f3f3f3",
    "param": "#d9ead3",
    "input": "#e8e8e8",
    "grad_output": "#f9cb9c",
    "output": "#cfe2f3",
    "group": "#e4d7f5",
}


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program is missing; the message says how to install it."""


def _graphviz():
    """The graphviz package, imported on first use."""
    try:
        import graphviz
    except ImportError as e:  # pragma: no cover - graphviz is a declared dependency
        raise ImportError(
            "tinygrad_np.viz needs the graphviz Python package: pip install graphviz"
        ) from e
    return graphviz


# ----------------------------------------------------------------------------- labels


def _fmt_value(v: Any, key: bool = False, inner: bool = False) -> str:
    """A short, readable rendering of one op argument (arrays are summarised)."""
    if isinstance(v, Tensor):
        v = v.data
    if isinstance(v, np.ndarray):
        if v.ndim <= 1 and v.size <= 6:
            return "[" + ", ".join(_fmt_value(x) for x in v.tolist()) + "]"
        return f"{v.dtype}[{'×'.join(str(n) for n in v.shape)}]"
    if isinstance(v, slice):
        parts = ["" if p is None else str(p) for p in (v.start, v.stop, v.step)]
        return ":".join(parts[:2] if v.step is None else parts)
    if v is Ellipsis:
        return "..."
    if v is None:
        return "None"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, str):
        return v
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return str(np.dtype(v))
    if isinstance(v, (tuple, list)):
        # nested tuples print tight inside, ((0,0), (1,2)), so that pad widths fit on a line
        body = ("," if inner else ", ").join(_fmt_value(x, inner=not key) for x in v)
        if key:
            return f"[{body}]"
        return f"({body},)" if len(v) == 1 else f"({body})"
    return type(v).__name__


def _shorten(s: str, n: int = _MAX_ARG_CHARS) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def format_args(args: dict[str, Any], hidden: tuple[str, ...] = ()) -> list[str]:
    """One ``name=value`` line per op argument, None and private ones (and ``hidden``,
    an op's own bookkeeping: ``Op.viz_hidden``) left out."""
    lines = []
    for k, v in args.items():
        if v is None or k.startswith("_") or k in hidden:
            continue
        lines.append(_shorten(f"{k}={_fmt_value(v, key=(k == 'key'))}"))
    if len(lines) > _MAX_ARGS:
        lines = lines[: _MAX_ARGS - 1] + [f"+{len(lines) - _MAX_ARGS + 1} more"]
    return lines


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))


def _grad_line(g: Any) -> str:
    """'grad (3, 4) ‖g‖=1.234' for a gradient tensor."""
    if g is None:
        return "grad: None"
    data = np.asarray(g.data if isinstance(g, Tensor) else g)
    return f"grad {_fmt_shape(data.shape)} ‖g‖={float(np.linalg.norm(data)):.4g}"


def _text(s: Any) -> str:
    """``s`` as the text of an HTML-like label, shown as written: HTML's characters
    escaped; a backslash doubled (Graphviz reads "\\N" in a label, HTML-like too, as the
    node's name, and drops the backslash of "\\b"); a newline as a line break; the other
    control characters, which XML cannot hold (``dot`` fails on them), as visible \\xNN
    escapes."""
    return _SPECIAL.sub(_special, html.escape(str(s)))


_SPECIAL = re.compile(r"[\\\x00-\x1f\x7f]")


def _special(m: re.Match) -> str:
    ch = m.group()
    if ch == "\n":
        return "<br/>"
    if ch == "\t":
        return " "
    return "&#92;&#92;" if ch == "\\" else f"&#92;&#92;x{ord(ch):02x}"


def _html_label(title: str, lines: list[str], bold: bool = True) -> str:
    """A Graphviz HTML-like label: the title (bold), then smaller lines."""
    head = _text(title)
    parts = [f"<b>{head}</b>" if bold else head]
    if lines:
        body = "<br/>".join(_text(s) for s in lines)
        parts.append(f'<font point-size="9">{body}</font>')
    return "<" + "<br/>".join(parts) + ">"


# ----------------------------------------------------------------------------- graph model


@dataclass
class _Node:
    key: str
    kind: str  # op, param, input, const, output, group
    title: str
    lines: list[str] = field(default_factory=list)
    cluster: tuple = ()  # ids of the Modules being called, outermost first
    color: str = ""
    dashed: bool = False


@dataclass
class _Graph:
    nodes: dict[str, _Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)  # topological order, inputs first
    op_key: dict[int, str] = field(default_factory=dict)
    clusters: dict[tuple, str] = field(default_factory=dict)  # cluster -> label
    module_of: dict[int, Any] = field(default_factory=dict)  # id -> Module


def _ops_in_order(outputs: list[Tensor]) -> list[Op]:
    """Every op the outputs depend on, each after the ops that produce its inputs."""
    order: list[Op] = []
    seen: set[int] = set()
    stack: list[tuple[Op, bool]] = [
        (t.grad_fn, False) for t in reversed(outputs) if t.grad_fn is not None
    ]
    while stack:
        op, done = stack.pop()
        if done:
            order.append(op)
            continue
        if id(op) in seen:
            continue
        seen.add(id(op))
        stack.append((op, True))
        for t in reversed(op.inputs):
            if t.grad_fn is not None and id(t.grad_fn) not in seen:
                stack.append((t.grad_fn, False))
    return order


def _named_modules(root: Any) -> list[tuple[str, Any]]:
    """(path, module) for root and every submodule; root's path is ''."""
    if hasattr(root, "named_modules"):
        return list(root.named_modules())
    out, seen, stack = [], set(), [("", root)]
    while stack:
        prefix, m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.append((prefix, m))
        if hasattr(m, "named_children"):
            kids = list(m.named_children())
        else:
            kids = [(k, v) for k, v in vars(m).items() if hasattr(v, "named_parameters")]
        for name, child in reversed(kids):
            stack.append((f"{prefix}.{name}" if prefix else name, child))
    return out


class _Names:
    """Parameter names and module paths, found by walking the root Modules."""

    def __init__(self, roots: list[Any]):
        self.param: dict[int, str] = {}
        self.owner: dict[int, int] = {}  # id(param) -> id(owning module)
        self.path: dict[int, str] = {}  # id(module) -> dotted path from its root
        for root in roots:
            by_path = {}
            for p, m in _named_modules(root):
                self.path.setdefault(id(m), p)
                by_path[p] = m
            if not hasattr(root, "named_parameters"):
                continue
            for name, t in root.named_parameters():
                if id(t) in self.param:
                    continue
                self.param[id(t)] = name
                owner = by_path.get(name.rpartition(".")[0])
                if owner is not None:
                    self.owner[id(t)] = id(owner)


def _build(
    outputs: list[Tensor],
    show_shapes: bool,
    show_grads: bool,
    module: Any = None,
    output_names: list[str] | None = None,
    forward_ops: set[int] | None = None,
    extra_roots: tuple = (),
    forward_leaves: set[int] | None = None,
) -> _Graph:
    """The graph model: nodes, edges and clusters, before any collapsing."""
    gr = _Graph()
    gr.ops = _ops_in_order(outputs)

    roots: dict[int, Any] = {}
    for m in (module, *extra_roots):
        if m is not None:
            roots.setdefault(id(m), m)
    for op in gr.ops:
        scope = getattr(op, "scope", ())
        if scope:
            roots.setdefault(id(scope[0]), scope[0])
    names = _Names(list(roots.values()))

    # clusters: one per module call path; a module's cluster is where its params go
    module_cluster: dict[int, tuple] = {}
    for op in gr.ops:
        scope = getattr(op, "scope", ())
        for i, m in enumerate(scope):
            c = tuple(id(s) for s in scope[: i + 1])
            if c not in gr.clusters:
                path = names.path.get(id(m), "")
                cls = type(m).__name__
                gr.clusters[c] = f"{path} · {cls}" if path else cls
                gr.module_of[id(m)] = m
            module_cluster.setdefault(id(m), c)

    def edge_label(t: Tensor) -> str:
        return f"{_fmt_shape(t.shape)} {t.dtype}" if show_shapes else ""

    leaf_key: dict[int, str] = {}

    def leaf(t: Tensor, consumer_cluster: tuple) -> str:
        if id(t) in leaf_key:
            return leaf_key[id(t)]
        key = f"t{len(leaf_key)}"
        leaf_key[id(t)] = key
        lines = [_fmt_shape(t.shape)] if show_shapes else []
        cluster: tuple = ()
        if id(t) in names.param:
            title, kind = names.param[id(t)], "param"
            cluster = module_cluster.get(names.owner.get(id(t), -1), ())
        elif t.ndim == 0 and not t.requires_grad:
            title, kind, lines = _fmt_value(t.data.item()), "const", []
            cluster = consumer_cluster
        elif t.name:
            title, kind = t.name, "param" if t.requires_grad else "input"
        elif t.requires_grad:
            title, kind = "tensor", "param"
        elif forward_leaves is not None and id(t) not in forward_leaves:
            title, kind = "saved", "input"  # an array a VJP kept from the forward
        else:
            title, kind = "input", "input"
        if show_grads and kind != "const":
            lines.append(_grad_line(t.grad) if t.requires_grad else "no grad")
        color = _COLORS["grad_output"] if title == "grad_output" else _COLORS.get(kind, "")
        gr.nodes[key] = _Node(key, kind, title, lines, cluster, "" if kind == "const" else color)
        return key

    for i, op in enumerate(gr.ops):
        key = f"op{i}"
        gr.op_key[id(op)] = key
        lines = format_args(getattr(op, "args", {}), getattr(op, "viz_hidden", ()))
        if show_grads and op._retain is not None:
            t = op._retain()
            if t is not None and t.grad is not None:
                lines.append(_grad_line(t.grad))
        cluster = tuple(id(m) for m in getattr(op, "scope", ()))
        node = _Node(key, "op", op.name, lines, cluster, _COLORS["op"])
        if forward_ops is not None:
            in_fwd = id(op) in forward_ops
            node.color = _COLORS["fwd_in_bwd" if in_fwd else "bwd"]
            node.dashed = in_fwd
        gr.nodes[key] = node
        for t in op.inputs:
            src = gr.op_key[id(t.grad_fn)] if t.grad_fn is not None else leaf(t, cluster)
            gr.edges.append((src, key, edge_label(t)))

    for j, t in enumerate(outputs):
        title = output_names[j] if output_names else (t.name or "output")
        if t.grad_fn is None:
            src = leaf(t, ())
            gr.nodes[src].kind = "output"
            continue
        lines = [_fmt_shape(t.shape)] if show_shapes else []
        if show_grads:
            lines.append(_grad_line(t.grad))
        key = f"out{j}"
        gr.nodes[key] = _Node(key, "output", title, lines, (), _COLORS["output"])
        gr.edges.append((gr.op_key[id(t.grad_fn)], key, edge_label(t)))
    return gr


# ----------------------------------------------------------------------------- collapsing


def _op_sig(op: Op, base: tuple) -> tuple:
    """What makes two ops the same for collapsing: name, args, input shapes, relative scope."""
    scope = tuple(type(m).__name__ for m in getattr(op, "scope", ())[len(base) :])
    return (
        op.name,
        tuple(format_args(getattr(op, "args", {}), getattr(op, "viz_hidden", ()))),
        tuple((t.shape, str(t.dtype)) for t in op.inputs),
        scope,
    )


def _find_repeats(seq: list, allowed) -> list[tuple[int, int, int]]:
    """(start, period, count) for runs where a block of ``period`` units repeats >= 2 times."""
    runs, i, n = [], 0, len(seq)
    while i < n:
        best = (0, 0)
        for p in range(1, min(16, (n - i) // 2) + 1):
            if not allowed(i, p):  # (first: a long graph of plain ops is then linear)
                continue
            r = 1
            while i + (r + 1) * p <= n and seq[i + r * p : i + (r + 1) * p] == seq[i : i + p]:
                r += 1
            if r >= 2 and p * r > best[0] * best[1]:
                best = (p, r)
        if best[0]:
            p, r = best
            # When the units after the run repeat the block's first ones, the run can start
            # that much later; do, so that it ends where the repetition ends:
            # Linear(4, 8), ReLU, [Linear(8, 8), ReLU] x 2, Linear(8, 2)
            extra = 0
            while extra < p and i + r * p + extra < n and seq[i + r * p + extra] == seq[i + extra]:
                extra += 1
            runs.append((i + extra, p, r))
            i += extra + p * r
        else:
            i += 1
    return runs


def _merge(gr: _Graph, members: set[str], node: _Node, absorb_params: bool = True) -> None:
    """Replace ``members`` by ``node``, with the leaves used only by them; reroute edges."""
    consumers: dict[str, set[str]] = {}
    for s, d, _ in gr.edges:
        consumers.setdefault(s, set()).add(d)
    for key, n in gr.nodes.items():
        if n.kind in ("param", "const", "input") and key in consumers:
            keep = n.kind == "input" or (n.kind == "param" and not absorb_params)
            if consumers[key] <= members and not keep:
                members.add(key)
    hidden = [gr.nodes[k] for k in members if gr.nodes[k].kind == "param"]
    if hidden:
        node.lines.append(f"{len(hidden)} parameter tensor{'s' if len(hidden) > 1 else ''}")
    for k in members:
        del gr.nodes[k]
    gr.nodes[node.key] = node
    edges, seen = [], set()
    for s, d, lbl in gr.edges:
        s2 = node.key if s in members else s
        d2 = node.key if d in members else d
        if s2 == d2 or (s2, d2) in seen:
            continue
        seen.add((s2, d2))
        edges.append((s2, d2, lbl))
    gr.edges = edges


def _collapse_blocks(gr: _Graph) -> None:
    """Fold runs of identical module blocks (same op sequence) into one node with a count."""
    gone: set[tuple] = set()  # clusters folded away
    for parent in [()] + sorted(gr.clusters, key=len):
        if any(parent[: len(g)] == g for g in gone):
            continue
        units: list = []  # child cluster tuples or op indices, in order of first appearance
        unit_ops: dict[Any, list[Op]] = {}
        for i, op in enumerate(gr.ops):
            c = gr.nodes[gr.op_key[id(op)]].cluster if gr.op_key[id(op)] in gr.nodes else None
            if c is None or c[: len(parent)] != parent:
                continue
            u = c[: len(parent) + 1] if len(c) > len(parent) else i
            if u not in unit_ops:
                units.append(u)
                unit_ops[u] = []
            unit_ops[u].append(op)
        sigs = []
        for u in units:
            ops_sig = tuple(_op_sig(op, parent) for op in unit_ops[u])
            sigs.append(("module", ops_sig) if isinstance(u, tuple) else ("op", ops_sig))

        def has_module(i: int, p: int, units=units) -> bool:
            return any(isinstance(u, tuple) for u in units[i : i + p])

        for start, p, r in _find_repeats(sigs, has_module):
            block = units[start : start + p * r]
            members = {gr.op_key[id(op)] for u in block for op in unit_ops[u]}
            first = [u for u in block if isinstance(u, tuple)]
            names = []
            for u in block[:p]:
                if isinstance(u, tuple):
                    names.append(type(gr.module_of[u[-1]]).__name__)
                else:
                    names.append(unit_ops[u][0].name)
            paths = [gr.clusters[u].split(" · ")[0] for u in first]
            lines = [f"{paths[0]} … {paths[-1]}"] if len(paths) > 1 else []
            lines.append(
                "ops per block: " + ", ".join(op.name for u in block[:p] for op in unit_ops[u])
            )
            key = f"grp{len([k for k in gr.nodes if k.startswith('grp')])}_{start}"
            title = f"{r} × " + (names[0] if p == 1 else "[" + " → ".join(names) + "]")
            node = _Node(key, "group", title, lines, parent, _COLORS["group"])
            _merge(gr, members, node)
            gone.update(first)
    used = {n.cluster[: i + 1] for n in gr.nodes.values() for i in range(len(n.cluster))}
    gr.clusters = {c: lbl for c, lbl in gr.clusters.items() if c in used}


def _collapse_chains(gr: _Graph) -> None:
    """Fold chains of >= 3 elementwise ops, each feeding only the next, into one node."""
    outs: dict[str, set[str]] = {}
    ins: dict[str, set[str]] = {}
    for s, d, _ in gr.edges:
        outs.setdefault(s, set()).add(d)
        ins.setdefault(d, set()).add(s)

    def elementwise(k: str) -> bool:
        n = gr.nodes.get(k)
        return n is not None and n.kind == "op" and n.title in ELEMENTWISE

    def link(a: str) -> str | None:
        """The next op in a's chain: its only consumer, elementwise and in the same cluster."""
        nxt = outs.get(a, set())
        if len(nxt) != 1:
            return None
        (b,) = nxt
        if elementwise(b) and gr.nodes[b].cluster == gr.nodes[a].cluster:
            return b
        return None

    has_prev = {b for a in gr.nodes if elementwise(a) and (b := link(a)) is not None}
    for start in [k for k in list(gr.nodes) if elementwise(k) and k not in has_prev]:
        chain = [start]
        while (b := link(chain[-1])) is not None:
            chain.append(b)
        if len(chain) < _MIN_CHAIN:
            continue
        names = [gr.nodes[k].title for k in chain]
        shown = names if len(names) <= 6 else names[:3] + ["…"] + names[-2:]
        node = _Node(
            f"chain_{start}",
            "group",
            f"{len(chain)} elementwise ops",
            [" → ".join(shown)],
            gr.nodes[start].cluster,
            _COLORS["group"],
        )
        _merge(gr, set(chain), node, absorb_params=False)


# ----------------------------------------------------------------------------- emit dot


# A tensor used by more ops than this (a weight applied at every step of a loop) is drawn
# once next to each use: Graphviz's layout of one node with edges to many ranks grew too
# fast (80 steps of h = tanh(h @ w) with one w: over 40 s in dot, against 0.1 s for 20).
SHARED_MAX_USES = 4


def _split_shared(gr: _Graph) -> None:
    """Draw each parameter or input used more than SHARED_MAX_USES times once per use, in
    the cluster of the op that uses it."""
    uses: dict[str, int] = {}
    for s, _, _ in gr.edges:
        uses[s] = uses.get(s, 0) + 1
    shared = {
        k for k, n in uses.items()
        if n > SHARED_MAX_USES and k in gr.nodes and gr.nodes[k].kind in ("param", "input")
    }  # fmt: skip
    if not shared:
        return
    edges = []
    for i, (s, d, lbl) in enumerate(gr.edges):
        if s in shared:
            n = gr.nodes[s]
            key = f"{s}_use{i}"
            cluster = gr.nodes[d].cluster if d in gr.nodes else n.cluster
            lines = n.lines + [f"(one tensor, drawn at each of its {uses[s]} uses)"]
            gr.nodes[key] = _Node(key, n.kind, n.title, lines, cluster, n.color, n.dashed)
            s = key
        edges.append((s, d, lbl))
    for k in shared:
        del gr.nodes[k]
    gr.edges = edges


def _emit(gr: _Graph, title: str | None = None):
    graphviz = _graphviz()
    _split_shared(gr)
    dot = graphviz.Digraph(
        "tinygrad_np",
        graph_attr={"rankdir": "TB", "fontname": "Helvetica", "nodesep": "0.25", "ranksep": "0.35"},
        node_attr={"fontname": "Helvetica", "fontsize": "11", "margin": "0.08,0.04"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "fontcolor": "#555555"},
    )
    if title:
        dot.attr(label=f"<{_text(title)}>", labelloc="t", fontsize="13")

    def add_node(g, n: _Node) -> None:
        attrs = {"label": _html_label(n.title, n.lines, bold=n.kind in ("op", "group"))}
        if n.kind == "op":
            attrs.update(shape="box", style="rounded,filled" + (",dashed" if n.dashed else ""))
        elif n.kind == "group":
            attrs.update(shape="box3d", style="filled")
        elif n.kind == "const":
            attrs.update(shape="plaintext", fontsize="9", height="0.2")
        elif n.kind == "output":
            attrs.update(shape="box", style="filled,bold", peripheries="2")
        else:
            attrs.update(shape="box" if n.kind == "param" else "ellipse", style="filled")
        if n.color:
            attrs["fillcolor"] = n.color
        g.node(n.key, **attrs)

    children: dict[tuple, list[tuple]] = {}
    for c in gr.clusters:
        children.setdefault(c[:-1], []).append(c)
    members: dict[tuple, list[_Node]] = {}
    for n in gr.nodes.values():
        c = n.cluster
        while c and c not in gr.clusters:  # a scope whose cluster was folded away
            c = c[:-1]
        members.setdefault(c, []).append(n)
    index = {c: i for i, c in enumerate(gr.clusters)}

    def add_cluster(g, c: tuple) -> None:
        with g.subgraph(name=f"cluster_{index[c]}") as sub:
            sub.attr(
                label=f"<{_text(gr.clusters[c])}>",
                style="rounded",
                color="#8c8c8c",
                fontsize="10",
                labeljust="l",
            )
            for n in members.get(c, []):
                add_node(sub, n)
            for child in children.get(c, []):
                add_cluster(sub, child)

    for n in members.get((), []):
        add_node(dot, n)
    for c in children.get((), []):
        add_cluster(dot, c)
    add_cluster = None  # (the recursive closure's cell held the graph in a reference cycle)
    for s, d, lbl in gr.edges:
        if lbl:
            dot.edge(s, d, label=" " + lbl)
        else:
            dot.edge(s, d)
    return dot


# ----------------------------------------------------------------------------- public API


def _check_outputs(outputs: tuple) -> list[Tensor]:
    if not outputs:
        raise ValueError("to_dot: pass at least one output tensor")
    for i, t in enumerate(outputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"to_dot: outputs[{i}] must be a Tensor, got {type(t).__name__}")
    return list(outputs)


def to_dot(
    *outputs: Tensor,
    show_shapes: bool = True,
    show_grads: bool = False,
    collapse: bool = False,
    module: Any = None,
    title: str | None = None,
):
    """The graph that computed ``outputs``, as a ``graphviz.Digraph``.

    Parameters
    ----------
    *outputs : Tensor
        The tensors whose history is drawn (each gets an output node).
    show_shapes : bool
        Label edges with the shape and dtype of the tensor they carry, and leaves with
        their shape.
    show_grads : bool
        After a backward, add each leaf's gradient shape and norm (and those of
        non-leaf tensors whose gradient was kept with ``retain_grad()``).
    collapse : bool
        Fold runs of identical module blocks and chains of 3 or more elementwise ops
        into one node each, with a count.
    module : Module, optional
        Where to look up parameter names. By default the outermost Module that was
        being called when each op was recorded (``op.scope[0]``).
    title : str, optional
        A caption drawn above the graph.

    One node per op (its functional name and arguments), one per leaf (parameter
    name from ``named_parameters()``, else ``tensor.name``, else "input" or "tensor",
    and its shape), one cluster per Module call. In Jupyter the returned Digraph
    displays inline.

    >>> import tinygrad_np as tg
    >>> x = tg.randn(2, 3, requires_grad=True)
    >>> dot = to_dot((x * 2).sum())
    >>> "mul" in dot.source and "sum" in dot.source and "(2, 3) float32" in dot.source
    True
    """
    outs = _check_outputs(outputs)
    gr = _build(outs, show_shapes, show_grads, module=module)
    if collapse:
        _collapse_blocks(gr)
        _collapse_chains(gr)
    return _emit(gr, title)


def render(dot: Any, path: str | pathlib.Path = "graph.svg", format: str | None = None):  # noqa: A002
    """Render a Digraph with Graphviz's ``dot`` to ``path``; returns the path.

    The format is ``format`` or else the path's suffix (svg, png, pdf; "dot" or "gv"
    writes the source only). Without the ``dot`` program the source is written next to
    ``path`` (same name, ``.dot`` suffix) and :class:`GraphvizNotFoundError` is raised.
    """
    graphviz = _graphviz()
    path = pathlib.Path(path)
    fmt = (format or path.suffix.lstrip(".") or "svg").lower()
    if fmt not in FORMATS + ("dot", "gv"):
        raise ValueError(
            f"draw_graph: unknown format {fmt!r} (from {'format' if format else 'the path'}); "
            f"use one of {', '.join(FORMATS + ('dot',))}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        path.write_text(dot.source)
        return path
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        src = path.with_suffix(".dot")
        src.write_text(dot.source)
        raise GraphvizNotFoundError(
            INSTALL_HINT + f"The graph's source was written to {src}; render it later with\n"
            f"    dot -T{fmt} {src} -o {path}"
        ) from None
    path.write_bytes(data)
    return path


def draw_graph(
    *outputs: Tensor,
    path: str | pathlib.Path = "graph.svg",
    format: str | None = None,  # noqa: A002 - graphviz's name
    **kwargs: Any,
) -> pathlib.Path:
    """Draw the graph of ``outputs`` to ``path`` (svg, png or pdf, from the suffix).

    ``kwargs`` go to :func:`to_dot` (``show_shapes``, ``show_grads``, ``collapse``,
    ``module``, ``title``). A ``graphviz.Digraph`` may be passed instead of tensors.
    Returns the path as a ``pathlib.Path``. Without Graphviz's ``dot`` program, writes
    the ``.dot`` source next to ``path`` and raises :class:`GraphvizNotFoundError`.
    """
    if len(outputs) == 1 and hasattr(outputs[0], "source") and hasattr(outputs[0], "pipe"):
        dot = outputs[0]
    else:
        dot = to_dot(*outputs, **kwargs)
    return render(dot, path, format)


def _leaves_needing_grad(output: Tensor, ops: list[Op]) -> list[Tensor]:
    out, seen = [], set()
    if output.grad_fn is None and output.requires_grad:
        return [output]
    for op in ops:
        for t in op.inputs:
            if t.grad_fn is None and t.requires_grad and id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def backward_dot(
    output: Tensor,
    inputs: Tensor | list[Tensor] | None = None,
    grad_output: Tensor | None = None,
    **kwargs: Any,
):
    """The graph of the backward pass: how the gradients of ``output`` are computed.

    Runs ``tinygrad_np.grad(output, inputs, grad_output, create_graph=True)`` so that
    each VJP records its ops, and draws the gradients' graph. ``inputs`` defaults to
    every leaf that requires grad; ``grad_output`` (the upstream gradient, drawn as
    the leaf "grad_output") defaults to ones of ``output``'s shape. Backward ops are
    orange; forward ops the VJPs reuse are grey and dashed. ``kwargs`` go to
    :func:`to_dot`. Nothing is accumulated into ``.grad``.

    >>> import tinygrad_np as tg
    >>> w = tg.randn(3, 3, requires_grad=True)
    >>> dot = backward_dot((tg.randn(2, 3) @ w).relu().sum(), w)
    >>> "grad_output" in dot.source and "grad tensor" in dot.source
    True
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"backward_dot: output must be a Tensor, got {type(output).__name__}")
    fwd_ops = _ops_in_order([output])
    if inputs is None:
        ins = _leaves_needing_grad(output, fwd_ops)
    else:
        ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_output is None:
        grad_output = Tensor(np.ones(output.shape, dtype=output.dtype))
    elif not isinstance(grad_output, Tensor):
        grad_output = Tensor(np.asarray(grad_output, dtype=output.dtype))
    # requires_grad on the upstream gradient makes every VJP op a recorded node
    g = Tensor._make(grad_output.data, False, None).requires_grad_(True)
    g.name = "grad_output"
    grads = _autograd_grad(output, ins, g, create_graph=True, allow_unused=True)

    module = kwargs.pop("module", None)
    roots = {id(module): module} if module is not None else {}
    for op in fwd_ops:
        scope = getattr(op, "scope", ())
        if scope:
            roots.setdefault(id(scope[0]), scope[0])
    names = _Names(list(roots.values()))
    outs, labels = [], []
    for i, (t, gi) in enumerate(zip(ins, grads, strict=True)):
        if gi is None:
            continue
        outs.append(gi)
        labels.append("grad " + (names.param.get(id(t)) or t.name or f"tensor{i}"))
    if not outs:
        raise ValueError("backward_dot: the output depends on none of the inputs")
    show_shapes = kwargs.pop("show_shapes", True)
    show_grads = kwargs.pop("show_grads", False)
    collapse = kwargs.pop("collapse", False)
    title = kwargs.pop("title", None)
    if kwargs:
        raise TypeError(f"backward_dot: unexpected arguments {sorted(kwargs)}")
    gr = _build(
        outs,
        show_shapes,
        show_grads,
        module=module,
        output_names=labels,
        forward_ops={id(op) for op in fwd_ops},
        extra_roots=tuple(roots.values()),
        forward_leaves={id(t) for op in fwd_ops for t in op.inputs if t.grad_fn is None},
    )
    if collapse:
        _collapse_blocks(gr)
        _collapse_chains(gr)
    return _emit(gr, title)


def draw_backward(
    output: Tensor,
    inputs: Tensor | list[Tensor] | None = None,
    grad_output: Tensor | None = None,
    path: str | pathlib.Path = "backward.svg",
    format: str | None = None,  # noqa: A002 - graphviz's name
    **kwargs: Any,
) -> pathlib.Path:
    """Draw :func:`backward_dot` to ``path``; returns the path."""
    return render(backward_dot(output, inputs, grad_output, **kwargs), path, format)


def graph_command(
    model: Any,
    out_path: str | pathlib.Path,
    backward: bool = False,
    input_shape: tuple[int, ...] = (1, 1, 28, 28),
    format: str | None = None,  # noqa: A002 - graphviz's name
    collapse: bool = False,
) -> pathlib.Path:
    """What ``tinygrad-np graph --model NAME -o OUT [--backward]`` does, given the model.

    Runs ``model`` (a Module or any callable) on a seeded random float input of
    ``input_shape`` and the parameters' dtype and draws the forward graph, or with
    ``backward=True`` the graph of the gradients of a loss (cross entropy against
    class 0 for a (N, C) output, else the sum of the output) with respect to every
    parameter. Returns the written path.
    """
    dtype = np.float32
    if hasattr(model, "parameters"):
        for p in model.parameters():
            dtype = p.dtype
            break
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal(tuple(input_shape)).astype(dtype))
    x.name = "input"
    y = model(x)
    module = model if hasattr(model, "named_parameters") else None
    if not backward:
        dot = to_dot(y, module=module, collapse=collapse)
    else:
        if y.ndim == 2:
            from tinygrad_np.ops.loss import cross_entropy

            loss = cross_entropy(y, np.zeros(y.shape[0], dtype=np.int64))
        else:
            loss = y.sum()
        dot = backward_dot(loss, module=module, collapse=collapse)
    return render(dot, out_path, format)
