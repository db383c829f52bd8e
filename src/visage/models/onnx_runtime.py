"""Shared onnxruntime session construction (CPU provider chosen explicitly, thread count set)."""

from __future__ import annotations

import os

import onnx
import onnxruntime as ort


def make_session(model: onnx.ModelProto | bytes | str, threads: int = 0) -> ort.InferenceSession:
    """A CPU inference session; ``threads=0`` uses every core.

    The provider is named explicitly: onnxruntime may list a remote provider first.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads > 0 else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
