"""dlib's face ResNet: dlib itself vs the converted ONNX graph, same faces, same run.

    .venv/bin/python benchmarks/bench_embedder.py

Chips come from LFW View 1 DevTest (``../shared/data``) when present, else from the shipped
sample photo with small shifts. Prints faces/s and ms/face at batch 32 and batch 1, the ratio
to dlib, the parity of the two (minimum cosine), and the achieved GFLOP/s next to the CPU's
nominal peak (cores x clock x 32 FP32 FLOP/cycle, the AVX2 + two-FMA-unit figure; the clock is the one
/proc/cpuinfo reports, the nominal one: cores running at boost clock can exceed 100 %).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from visage import FaceAnalyzer, Settings
from visage.models.embed_dlib_resnet import DlibResNetEmbedder
from visage.models.embed_dlib_resnet_onnx import OnnxDlibResNetEmbedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-view1"


def load_chips(analyzer: FaceAnalyzer, count: int) -> tuple[np.ndarray, str]:
    aligner = analyzer.embedder.aligner
    if DATA.is_dir():
        chips = []
        for path in sorted((DATA / "images").glob("*/*.jpg"))[:: 4992 // count][:count]:
            image = analyzer.load(path)
            faces = analyzer.analyze(image, embed=False, faces="central", fallback_to_centre=True)
            chips.append(aligner.align(image, faces.boxes, faces.landmarks)[0])
        return np.stack(chips), f"{len(chips)} LFW View 1 faces"
    image = analyzer.load(resources.files("visage.data").joinpath("astronaut.jpg").read_bytes())
    faces = analyzer.detect(image)
    chip = aligner.align(image, faces.boxes, faces.landmarks)[0]
    return np.stack([np.roll(chip, (i % 7 - 3, i % 5 - 2), axis=(0, 1)) for i in range(count)]), "shifted sample face"


def flops_per_face(onnx_path: Path) -> float:
    """Multiply-adds of every Conv and MatMul, counted as 2 FLOPs, from the inferred shapes."""
    model = onnx.load(str(onnx_path))
    graph = model.graph
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    inferred = shape_inference.infer_shapes(model).graph
    values = (*inferred.value_info, *inferred.output)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    total = 0.0
    for node in graph.node:
        if node.op_type == "Conv":
            out_c, in_c, kh, kw = weights[node.input[1]]
            _, _, oh, ow = shapes[node.output[0]]
            total += 2.0 * out_c * in_c * kh * kw * oh * ow
        elif node.op_type == "MatMul":
            rows, cols = weights[node.input[1]]
            total += 2.0 * rows * cols
    return total


def peak_gflops() -> tuple[float, str]:
    cores = os.cpu_count() or 1
    mhz = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":")[1])
                break
    except OSError:
        pass
    return cores * mhz / 1000 * 32, f"{cores} cores x {mhz / 1000:.2f} GHz x 32 FLOP/cycle"


def faces_per_second(run: Callable[[np.ndarray], object], chips: np.ndarray, batch: int, seconds: float) -> float:
    run(chips[:batch])  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for start in range(0, len(chips), batch):
            run(chips[start : start + batch])
            done += len(chips[start : start + batch])
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0, help="Minimum time per measurement.")
    args = parser.parse_args()

    settings = Settings()
    analyzer = FaceAnalyzer(settings)
    fast = analyzer.embedder
    assert isinstance(fast, OnnxDlibResNetEmbedder)
    reference = DlibResNetEmbedder()
    chips, source = load_chips(analyzer, args.faces)

    cosine = (reference.embed(chips) * fast.embed(chips)).sum(axis=1)
    flops = flops_per_face(fast.onnx_path)
    peak, peak_note = peak_gflops()
    print(f"faces: {source}; network: {flops / 1e9:.3f} GFLOP per face; parity: min cosine {cosine.min():.7f}")
    print(f"CPU nominal peak ~{peak:.0f} GFLOP/s ({peak_note})\n")
    header = ("batch", "runtime", "faces/s", "ms/face", "GFLOP/s", "% nominal peak", "vs dlib")
    print("{:>5}  {:<24} {:>8} {:>8} {:>8} {:>15} {:>8}".format(*header))
    for batch in (32, 1):
        dlib_rate = faces_per_second(reference.embed, chips, batch, args.seconds)
        onnx_rate = faces_per_second(fast.embed, chips, batch, args.seconds)
        for label, rate in (("dlib (1 process)", dlib_rate), ("onnxruntime (all cores)", onnx_rate)):
            gflops = rate * flops / 1e9
            print(f"{batch:>5}  {label:<24} {rate:8.1f} {1000 / rate:8.2f} {gflops:8.1f} {100 * gflops / peak:14.1f}% "
                  f"{rate / dlib_rate:7.2f}x")


if __name__ == "__main__":
    main()
