"""Builds an ONNX graph equivalent to dlib's face ResNet, and caches it on disk.

The graph takes the same 150x150 RGB uint8 chips dlib does (``NHWC``) and returns the
same 128-d descriptor (not normalised, like dlib). Each affine layer (dlib's frozen
batch-norm) is folded into the convolution before it, so the graph is convolutions,
ReLUs, pooling and adds — the shapes onnxruntime fuses and runs well on CPU.

dlib's ``add_prev`` adds tensors of different shapes by padding the smaller one with
zeros at the end of each dimension (more channels, or one more row and column after a
strided block); the graph does the same with explicit ``Pad`` nodes, sized at
conversion time from the fixed 150x150 input.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from visage.errors import ModelError
from visage.models.dlib_dnn_reader import DlibResNet, Layer, read_dlib_resnet

# Bump when the graph this module builds changes, so cached files are rebuilt.
CONVERTER_VERSION = 1
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"

Shape = tuple[int, int, int]  # channels, rows, columns


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def constant(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output


def _pooled(size: int, kernel: int, stride: int, padding: int) -> int:
    return 1 + (size + 2 * padding - kernel) // stride


def _pad_to(graph: _GraphBuilder, value: str, shape: Shape, target: Shape) -> str:
    if shape == target:
        return value
    pads = [0, 0, 0, 0, 0, *(t - s for t, s in zip(target, shape, strict=True))]
    return graph.node("Pad", [value, graph.constant("pads", np.array(pads, np.int64))], mode="constant")


def _conv(graph: _GraphBuilder, value: str, conv: Layer, affine: Layer) -> str:
    gamma, beta = affine.params["gamma"], affine.params["beta"]
    weight = conv.params["weight"] * gamma[:, None, None, None]
    bias = conv.params["bias"] * gamma + beta
    pad = conv.padding
    return graph.node(
        "Conv",
        [value, graph.constant("w", weight.astype(np.float32)), graph.constant("b", bias.astype(np.float32))],
        kernel_shape=[conv.kernel, conv.kernel],
        strides=[conv.stride, conv.stride],
        pads=[pad, pad, pad, pad],
    )


def build_onnx(net: DlibResNet) -> onnx.ModelProto:
    """The ONNX model for a parsed dlib face ResNet (opset 17)."""
    graph = _GraphBuilder()
    size = net.input_size
    value = graph.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    value = graph.node("Transpose", [value], perm=[0, 3, 1, 2])
    mean = np.array(net.input_mean, np.float32).reshape(1, 3, 1, 1)
    value = graph.node("Sub", [value, graph.constant("mean", mean)])
    value = graph.node("Mul", [value, graph.constant("scale", np.array(1 / 256, np.float32))])
    shape: Shape = (3, size, size)
    tags: dict[int, tuple[str, Shape]] = {}
    layers = net.layers[1:]
    index = 0
    while index < len(layers):
        layer = layers[index]
        if layer.kind == "con":
            following = layers[index + 1] if index + 1 < len(layers) else None
            if following is None or following.kind != "affine":
                raise ModelError("dlib face ResNet: a convolution not followed by its affine layer")
            value = _conv(graph, value, layer, following)
            rows = _pooled(shape[1], layer.kernel, layer.stride, layer.padding)
            shape = (layer.filters, rows, rows)
            index += 1  # the affine layer is folded in
        elif layer.kind == "relu":
            value = graph.node("Relu", [value])
        elif layer.kind in ("max_pool", "avg_pool") and layer.kernel == 0:
            value = graph.node("GlobalAveragePool", [value])
            shape = (shape[0], 1, 1)
        elif layer.kind in ("max_pool", "avg_pool"):
            op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
            value = graph.node(op, [value], kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2)
            rows = _pooled(shape[1], layer.kernel, layer.stride, layer.padding)
            shape = (shape[0], rows, rows)
        elif layer.kind == "tag":
            tags[layer.tag] = (value, shape)
        elif layer.kind == "skip":
            value, shape = tags[layer.tag]
        elif layer.kind == "add_prev":
            other, other_shape = tags[layer.tag]
            target: Shape = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            value = graph.node(
                "Add", [_pad_to(graph, value, shape, target), _pad_to(graph, other, other_shape, target)]
            )
            shape = target
        elif layer.kind == "fc":
            value = graph.node("Flatten", [value], axis=1)
            weight = layer.params["weight"]
            if weight.shape[0] != shape[0] * shape[1] * shape[2]:
                raise ModelError(f"dlib face ResNet: fc expects {weight.shape[0]} inputs, graph gives {shape}")
            value = graph.node("MatMul", [value, graph.constant("fc", weight)])
        else:
            raise ModelError(f"dlib face ResNet: cannot convert layer kind '{layer.kind}'")
        index += 1
    graph.nodes.append(helper.make_node("Identity", [value], [OUTPUT_NAME]))
    dim = net.layers[-1].filters
    onnx_graph = helper.make_graph(
        graph.nodes,
        "dlib_face_resnet_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", dim])],
        graph.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="visage")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def cached_onnx_path(cache_dir: Path, source_sha256: str) -> Path:
    return Path(cache_dir) / f"dlib_resnet_v1-{source_sha256[:16]}-c{CONVERTER_VERSION}.onnx"


def convert(source: Path, source_sha256: str, cache_dir: Path, *, force: bool = False) -> Path:
    """The cached ONNX file for ``source``, built (atomically) when missing or when ``force``.

    The cache key is the source file's sha256 plus :data:`CONVERTER_VERSION`; concurrent
    processes may both convert, each writes a private temporary file and renames it.
    """
    target = cached_onnx_path(cache_dir, source_sha256)
    if target.is_file() and not force:
        return target
    model = build_onnx(read_dlib_resnet(source))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".convert-", delete=False) as handle:
            handle.write(model.SerializeToString())
            temporary = Path(handle.name)
        os.replace(temporary, target)
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {target}: {exc.strerror}") from None
    return target
