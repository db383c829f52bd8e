"""Reads dlib's serialised face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) without dlib.

dlib writes a network by recursing through its C++ type: every wrapper (``add_layer``,
``add_tag_layer``, ``add_skip_layer``, the loss) writes a version number and then its
sub-network *before* its own layer, so the file holds a run of version numbers, then the
input layer, then each layer's parameters from the bottom of the network to the top.
Tags, skips and ``add_prev`` store nothing that names which tag they refer to — in dlib
that lives in the C++ type. :data:`FACE_RESNET` therefore spells out that type (the
``anet_type`` of dlib's ``face_recognition_model_v1``) and the reader parses the file
strictly against it: every version number, layer name and kernel geometry must match, so
a different file fails loudly instead of producing a wrong network.

Encoding (dlib/serialize.h): integers are a control byte (bit 7 = negative, low 4 bits =
number of bytes) followed by little-endian magnitude bytes; floats are a mantissa and an
exponent integer (value = mantissa · 2^exponent); strings are a length then bytes; bools
the ASCII bytes ``'1'``/``'0'``; tensors (dlib/cuda/tensor.h) a version, four dimensions
(samples, channels, rows, columns) and raw little-endian float32 data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visage.errors import ModelError

# dlib's float_details marks non-finite values with these exponents.
_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibStream:
    """Cursor over the bytes of a dlib-serialised object."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.source}: not dlib's face ResNet as expected at byte {self.pos}: {what}")

    def _take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"file ends early (needed {count} more bytes)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise self.fail(f"integer of {size} bytes")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise self.fail(f"implausible string length {length}")
        return self._take(length).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bool byte {byte!r}")
        return byte == b"1"

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.integer()
        if value not in allowed:
            raise self.fail(f"{what} version {value}, expected one of {allowed}")
        return value

    def expect(self, allowed: tuple[str, ...]) -> str:
        name = self.string()
        if name not in allowed:
            raise self.fail(f"layer '{name}', expected one of {allowed}")
        return name

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as an ``(samples, channels, rows, columns)`` float32 array."""
        self.version((2,), "tensor")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, ...]:
        self.version((1,), "alias_tensor")
        return tuple(self.integer() for _ in range(4))


# --- the network's type, spelled out -------------------------------------------------------


@dataclass
class Layer:
    """One node of the network, bottom-up order; parameters are filled in by the reader."""

    kind: str  # input | con | affine | relu | max_pool | avg_pool | tag | skip | add_prev | fc
    filters: int = 0
    kernel: int = 0
    stride: int = 1
    tag: int = 0
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def padding(self) -> int:
        """dlib's default: no padding when strided, half the kernel otherwise (avg_pool_everything: none)."""
        return 0 if self.stride != 1 or self.kernel == 0 else self.kernel // 2


def _block(filters: int, stride: int) -> list[Layer]:
    # block<N,BN,stride,SUBNET> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [
        Layer("con", filters, 3, stride),
        Layer("affine"),
        Layer("relu"),
        Layer("con", filters, 3, 1),
        Layer("affine"),
    ]


def _ares(filters: int) -> list[Layer]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [Layer("tag", tag=1), *_block(filters, 1), Layer("add_prev", tag=1), Layer("relu")]


def _ares_down(filters: int) -> list[Layer]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        Layer("tag", tag=1),
        *_block(filters, 2),
        Layer("tag", tag=2),
        Layer("skip", tag=1),
        Layer("avg_pool", kernel=2, stride=2),
        Layer("add_prev", tag=2),
        Layer("relu"),
    ]


def face_resnet_layers() -> list[Layer]:
    """dlib's ``anet_type`` (dnn_face_recognition_ex.cpp), bottom-up, without parameters."""
    levels: list[Layer] = []
    for filters, plain, down in ((32, 3, False), (64, 3, True), (128, 2, True), (256, 2, True), (256, 0, True)):
        if down:
            levels += _ares_down(filters)
        for _ in range(plain):
            levels += _ares(filters)
    return [
        Layer("input", kernel=150),
        Layer("con", 32, 7, 2),
        Layer("affine"),
        Layer("relu"),
        Layer("max_pool", kernel=3, stride=2),
        *levels,
        Layer("avg_pool", kernel=0, stride=1),  # avg_pool_everything
        Layer("fc", filters=128),
    ]


@dataclass
class DlibResNet:
    """The parsed network: layers bottom-up with parameters, and the input's mean colour."""

    layers: list[Layer]
    input_mean: tuple[float, float, float]
    input_size: int

    def parameter_count(self) -> int:
        return sum(int(a.size) for layer in self.layers for a in layer.params.values())


# --- parsing --------------------------------------------------------------------------------


def _wrapper_versions(layers: list[Layer]) -> Iterator[tuple[Layer, tuple[int, ...]]]:
    """The version numbers written top-down before the input layer, one per wrapper."""
    for layer in reversed(layers[1:]):
        if layer.kind in ("tag", "skip"):
            yield layer, (1,)
        elif layer is layers[1]:
            yield layer, (2, 3)  # the add_layer that holds the input layer
        else:
            yield layer, (1, 2)


def _read_input(stream: DlibStream, layer: Layer) -> tuple[float, float, float]:
    stream.expect(("input_rgb_image_sized",))
    mean = (stream.real(), stream.real(), stream.real())
    rows, cols = stream.integer(), stream.integer()
    if rows != layer.kernel or cols != layer.kernel:
        raise stream.fail(f"input size {rows}x{cols}, expected {layer.kernel}x{layer.kernel}")
    return mean


def _check_geometry(stream: DlibStream, layer: Layer, found: tuple[int, ...]) -> None:
    expected = (layer.kernel, layer.kernel, layer.stride, layer.stride, layer.padding, layer.padding)
    if found != expected:
        raise stream.fail(f"{layer.kind} geometry {found}, expected {expected}")


def _read_details(stream: DlibStream, layer: Layer) -> None:
    """One layer's own parameters (the ``details`` member of its add_layer)."""
    if layer.kind == "con":
        name = stream.expect(("con_4", "con_5"))
        params = stream.tensor().ravel()
        filters = stream.integer()
        geometry = tuple(stream.integer() for _ in range(6))
        _check_geometry(stream, layer, geometry)
        weight_shape, bias_shape = stream.alias_tensor(), stream.alias_tensor()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            stream.real()
        use_bias = stream.boolean() if name == "con_5" else True
        if filters != layer.filters or weight_shape[0] != filters:
            raise stream.fail(f"convolution with {filters} filters, expected {layer.filters}")
        weight_size = int(np.prod(weight_shape))
        bias_size = int(np.prod(bias_shape)) if use_bias else 0
        if params.size != weight_size + bias_size:
            raise stream.fail(f"convolution holds {params.size} values, its shapes need {weight_size + bias_size}")
        layer.params["weight"] = params[:weight_size].reshape(weight_shape)
        layer.params["bias"] = params[weight_size:] if use_bias else np.zeros(filters, np.float32)
    elif layer.kind == "affine":
        name = stream.expect(("affine_", "affine_2"))
        params = stream.tensor().ravel()
        gamma_shape, beta_shape = stream.alias_tensor(), stream.alias_tensor()
        mode = stream.integer()
        if name == "affine_2" and stream.boolean():
            raise stream.fail("disabled affine layer")
        channels = int(np.prod(gamma_shape))
        if mode != 0 or params.size != channels + int(np.prod(beta_shape)):
            raise stream.fail(f"affine layer mode {mode} with {params.size} values for {channels} channels")
        layer.params["gamma"], layer.params["beta"] = params[:channels], params[channels:]
    elif layer.kind in ("max_pool", "avg_pool"):
        stream.expect((f"{layer.kind}_2",))
        _check_geometry(stream, layer, tuple(stream.integer() for _ in range(6)))
    elif layer.kind == "relu":
        stream.expect(("relu_",))
    elif layer.kind == "add_prev":
        stream.expect(("add_prev_",))
    elif layer.kind == "fc":
        name = stream.expect(("fc_2", "fc_3"))
        outputs, inputs = stream.integer(), stream.integer()
        params = stream.tensor().ravel()
        weight_shape, _ = stream.alias_tensor(), stream.alias_tensor()
        no_bias = stream.integer() == 1
        for _ in range(4):
            stream.real()
        if name == "fc_3":
            stream.boolean()
        if outputs != layer.filters or not no_bias or params.size != inputs * outputs:
            raise stream.fail(f"fc layer {inputs}->{outputs} (no bias: {no_bias}); expected {layer.filters}, no bias")
        layer.params["weight"] = params.reshape(weight_shape[0], weight_shape[1])  # (inputs, outputs)
    else:  # pragma: no cover - face_resnet_layers() only builds the kinds above
        raise stream.fail(f"no reader for layer kind {layer.kind}")


def _skip_training_state(stream: DlibStream, version: int, holds_input: bool) -> None:
    """After each layer dlib stores flags and tensors that only matter for training."""
    for _ in range(3):
        stream.boolean()
    stream.tensor()  # x_grad
    stream.tensor()  # cached_output
    if holds_input:
        stream.tensor()  # grad_final
        if version >= 3:
            stream.integer()  # sample expansion factor
    elif version >= 2:
        stream.tensor()  # params_grad


def read_dlib_resnet(path: Path) -> DlibResNet:
    """Parse dlib's face ResNet file into layers with numpy parameters."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    stream = DlibStream(data, str(path))
    layers = face_resnet_layers()
    stream.version((1,), "add_loss_layer")
    loss = stream.expect(("loss_metric_", "loss_metric_2"))
    if loss == "loss_metric_2":
        stream.real(), stream.real()  # margin, distance threshold: training only
    versions: dict[int, int] = {}
    for layer, allowed in _wrapper_versions(layers):
        versions[id(layer)] = stream.version(allowed, f"{layer.kind} wrapper")
    mean = _read_input(stream, layers[0])
    for layer in layers[1:]:
        if layer.kind in ("tag", "skip"):
            continue
        _read_details(stream, layer)
        _skip_training_state(stream, versions[id(layer)], holds_input=layer is layers[1])
    if stream.pos != len(data):
        raise stream.fail(f"{len(data) - stream.pos} unexpected bytes after the network")
    return DlibResNet(layers=layers, input_mean=mean, input_size=layers[0].kernel)
