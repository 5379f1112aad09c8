"""Rewrite tf2onnx's spelling of instance normalization as ONNX's own `InstanceNormalization`.

Why: tf2onnx converts Keras's `GroupNormalization(groups=-1)` (the compact model's per-image
normalization) op by op: a transpose from the convolution's NCHW to NHWC, a reshape, two
`ReduceMean`s and about ten elementwise ops, each a full pass over the feature map; in ONNX
Runtime's profile of the default model they took more time than the convolutions. One
`InstanceNormalization` on the convolution's NCHW output computes the same, and ONNX Runtime's
transpose optimizer then drops the layout changes between layers (docs/experiments.md, ONNX
Runtime, has the times before and after). A chain that does not match the expected ops exactly is
left as it was, and `export_onnx` compares the rewritten model's outputs with the Keras model's
either way.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Mismatch(Exception):
    """The chain is not the one this rewrite knows."""


class _Graph:
    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {init.name: init for init in graph.initializer}

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto:
        node = self.producer.get(name)
        if node is None or node.op_type != op_type:
            raise _Mismatch(name)
        return node

    def used_by(self, node: onnx.NodeProto, op_type: str, also_reads: str | None = None) -> onnx.NodeProto:
        found = {id(c): c for c in self.consumers.get(node.output[0], [])
                 if c.op_type == op_type and (also_reads is None or also_reads in c.input)}
        if len(found) != 1:
            raise _Mismatch(node.name)
        return next(iter(found.values()))

    def constant(self, name: str) -> np.ndarray:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        raise _Mismatch(name)

    def constant_among(self, names) -> np.ndarray:
        """The value of the one constant among a node's inputs."""
        values = []
        for name in names:
            try:
                values.append(self.constant(name))
            except _Mismatch:
                pass
        if len(values) != 1:
            raise _Mismatch(", ".join(names))
        return values[0]


def _ints(node: onnx.NodeProto, name: str) -> list[int] | None:
    values = [list(a.ints) for a in node.attribute if a.name == name]
    return values[0] if values else None


def _instance_norm(g: _Graph, mean: onnx.NodeProto, index: int):
    """For a `ReduceMean` that starts tf2onnx's instance normalization: (the nodes and initializers
    that replace the chain, the chain's last node, whose output the new nodes produce instead)."""
    reshaped = g.made_by(mean.input[0], "Reshape")
    to_nhwc = g.made_by(reshaped.input[0], "Transpose")
    # (batch, H, W, groups, channels per group): instance normalization has one channel per group.
    groups_shape = g.constant(reshaped.input[1])
    if _ints(to_nhwc, "perm") != [0, 2, 3, 1] or groups_shape.shape != (5,) or groups_shape[-1] != 1:
        raise _Mismatch(to_nhwc.name)
    centred = g.used_by(mean, "Sub", also_reads=reshaped.output[0])
    squared = g.used_by(centred, "Mul")
    variance = g.used_by(squared, "ReduceMean")
    plus_eps = g.used_by(variance, "Add")
    root = g.used_by(plus_eps, "Sqrt")
    inverse = g.used_by(root, "Reciprocal")
    times_gamma = g.used_by(inverse, "Mul")
    scaled = g.used_by(times_gamma, "Mul", also_reads=reshaped.output[0])
    result = g.used_by(scaled, "Add")
    shift = g.made_by(next(name for name in result.input if name != scaled.output[0]), "Add")
    # beta - mean * gamma / sqrt(var + eps), the other half of the affine map
    minus_mean = g.used_by(mean, "Neg")
    g.used_by(minus_mean, "Mul", also_reads=times_gamma.output[0])
    if not any(g.producer.get(name) is not None and minus_mean.output[0] in g.producer[name].input for name in shift.input):
        raise _Mismatch(shift.name)
    back = g.used_by(result, "Reshape")
    epsilon = g.constant_among(plus_eps.input)
    gamma, beta = g.constant_among(times_gamma.input), g.constant_among(shift.input)
    if _ints(mean, "axes") != [1, 2, 4] or epsilon.size != 1 or gamma.size != beta.size:
        raise _Mismatch(mean.name)
    epsilon = float(epsilon.reshape(()))
    key = f"instance_norm_{index}"
    initializers = [
        numpy_helper.from_array(gamma.reshape(-1).astype(np.float32), f"{key}/scale"),
        numpy_helper.from_array(beta.reshape(-1).astype(np.float32), f"{key}/bias"),
    ]
    nodes = [
        helper.make_node("InstanceNormalization", [to_nhwc.input[0], f"{key}/scale", f"{key}/bias"], [f"{key}/nchw"],
                         epsilon=epsilon, name=key),
        helper.make_node("Transpose", [f"{key}/nchw"], [back.output[0]], perm=[0, 2, 3, 1], name=f"{key}/to_nhwc"),
    ]
    return nodes, initializers, back


def fuse_instance_norms(model: onnx.ModelProto) -> int:
    """Rewrite every matching chain in place; returns how many were rewritten."""
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in model.graph.node for a in n.attribute):
        return 0  # a subgraph may read any outer value: pruning below would not see those reads
    g = _Graph(model.graph)
    added_nodes, added_inits, replaced = [], [], set()
    for node in list(model.graph.node):
        if node.op_type != "ReduceMean" or _ints(node, "axes") != [1, 2, 4]:
            continue
        try:
            nodes, inits, back = _instance_norm(g, node, len(added_inits) // 2)
        except _Mismatch:
            continue
        added_nodes += nodes
        added_inits += inits
        replaced.add(back.output[0])  # names a value's one producer (ONNX graphs are single-assignment)
    if not replaced:
        return 0
    nodes = [n for n in model.graph.node if not set(n.output) & replaced] + added_nodes
    model.graph.initializer.extend(added_inits)
    _keep_only_what_outputs_need(model, nodes)
    onnx.checker.check_model(model)
    return len(replaced)


def _keep_only_what_outputs_need(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    """Set the graph's nodes to those the outputs depend on, in an order ONNX accepts (each after
    its inputs), and drop initializers no node reads."""
    producer = {out: node for node in nodes for out in node.output}
    needed, wanted = {}, [out.name for out in model.graph.output]
    while wanted:
        node = producer.get(wanted.pop())
        if node is not None and id(node) not in needed:
            needed[id(node)] = node
            wanted.extend(node.input)
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered, pending = [], list(needed.values())
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError("the rewritten ONNX graph has a cycle")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    read = {name for node in ordered for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def name_input(model: onnx.ModelProto, name: str) -> None:
    """Give the graph's one input a readable name (the exporter's is an internal tensor's)."""
    old = model.graph.input[0].name
    model.graph.input[0].name = name
    for node in model.graph.node:
        for i, value in enumerate(node.input):
            if value == old:
                node.input[i] = name
