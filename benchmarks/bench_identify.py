"""Open-set identification (1:N) on LFW View 1: Visage's Gallery vs the `face_recognition` package, same run.

    make bench-identify     # builds the peer's environment, then runs this script

Each split (DevTrain, where choices are made; DevTest, where they are reported) is its own
world: its people with two or more images are enrolled, its people with one image are
strangers whose searches must come back empty. Two enrolment protocols:

* ``first photo``: each person enrolled from their first image, probed with each other one;
* ``all but last``: each person enrolled from every image but the last, probed with the last.
  People with three or more images then have several templates, which is where the person
  scoring rule (``max`` or ``mean_best2``) matters.

Figures: rank-1 identification rate of the mated searches; FNIR at FPIR = 1 % (the threshold
put where 1 % of the strangers' best candidates pass it; a mated search fails when its best
candidate is not the person or is below the threshold); and FPIR / FNIR of each system's own
decision: Visage's default identification operating point (``fpir=1e-2``, turned into a
per-comparison FMR by the gallery's size), the peer's ``compare_faces`` (tolerance 0.6).
Visage runs through its real Gallery (SQLite + FAISS), enrolling the same central faces its
pair evaluation uses; the peer gets the nearest encoding by Euclidean distance, as its
``face_distance``/``compare_faces`` do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peer import run_peer
from visage.config import Settings
from visage.eval.pairs import embed_pair_images, read_pairs
from visage.gallery import Gallery, NewTemplate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw-view1"
TARGET_FPIR = 0.01
PEER_TOLERANCE = 0.6  # face_recognition.compare_faces' default


@dataclass(frozen=True)
class Protocol:
    """Who is enrolled from which images, and the searches: (true person or None for a stranger, image)."""

    name: str
    enrolled: dict[str, list[Path]]
    searches: list[tuple[str | None, Path]]


def protocols(images: list[Path]) -> list[Protocol]:
    by_person: dict[str, list[Path]] = defaultdict(list)
    for image in sorted(images):
        by_person[image.parent.name].append(image)
    people = {name: paths for name, paths in by_person.items() if len(paths) >= 2}
    strangers: list[tuple[str | None, Path]] = [(None, paths[0]) for paths in by_person.values() if len(paths) == 1]
    first = Protocol("first photo", {name: paths[:1] for name, paths in people.items()},
                     [(name, p) for name, paths in people.items() for p in paths[1:]] + strangers)
    rest = Protocol("all but last", {name: paths[:-1] for name, paths in people.items()},
                    [(name, paths[-1]) for name, paths in people.items()] + strangers)
    return [first, rest]


@dataclass(frozen=True)
class Outcome:
    """Per search: was the best candidate the true person, its score (higher is more alike), the system's decision."""

    truth: np.ndarray  # bool, per search: a mated search
    top_is_mate: np.ndarray
    top_score: np.ndarray
    top_accepted: np.ndarray  # the system itself called the best candidate a match

    def rank1(self) -> float:
        return float(self.top_is_mate[self.truth].mean())

    def rates(self, accepted: np.ndarray) -> tuple[float, float]:
        """(FPIR, FNIR) when the best candidates marked ``accepted`` are returned as matches."""
        hits = self.top_is_mate[self.truth] & accepted[self.truth]
        return float(accepted[~self.truth].mean()), float(1 - hits.mean())

    def rates_at(self, threshold: float) -> tuple[float, float]:
        return self.rates(self.top_score >= threshold)

    def fnir_at_fpir(self, fpir: float) -> float:
        strangers = np.sort(self.top_score[~self.truth])[::-1]
        allowed = int(np.floor(fpir * strangers.size))
        threshold = float(np.nextafter(strangers[allowed], np.inf)) if allowed < strangers.size else -np.inf
        return self.rates_at(threshold)[1]


def visage_outcome(protocol: Protocol, embeddings: dict[Path, np.ndarray], scoring: str, data_dir: Path) -> Outcome:
    """Enrol and search through the Gallery API with the given person scoring rule."""
    settings = Settings(data_dir=data_dir, gallery={"scoring": scoring})
    truth, mate, score, accepted = [], [], [], []
    with Gallery(settings) as gallery:
        name = protocol.name.replace(" ", "_")
        if name not in {g.name for g in gallery.galleries()}:
            gallery.create(name, legal_basis="legitimate_interest", justification="accuracy benchmark on LFW")
            for person, paths in protocol.enrolled.items():
                templates = [NewTemplate(embeddings[p], p.name, (0.0, 0.0, 1.0, 1.0), 1.0) for p in paths]
                gallery.enroll_templates(name, person, templates)
        for person, image in protocol.searches:
            candidates = gallery.identify_embedding(name, embeddings[image], top_k=1).candidates
            truth.append(person is not None)
            mate.append(bool(candidates) and candidates[0].external_id == person)
            score.append(candidates[0].similarity if candidates else -np.inf)
            accepted.append(bool(candidates) and candidates[0].same)
    return Outcome(np.array(truth), np.array(mate), np.array(score), np.array(accepted))


def peer_outcome(protocol: Protocol, encodings: dict[Path, np.ndarray]) -> Outcome:
    """Nearest enrolled encoding by Euclidean distance; score = minus the distance."""
    owners = [person for person, paths in protocol.enrolled.items() for _ in paths]
    enrolled = np.stack([encodings[p] for paths in protocol.enrolled.values() for p in paths])
    truth, mate, score = [], [], []
    for person, image in protocol.searches:
        distances = np.linalg.norm(enrolled - encodings[image], axis=1)
        best = int(np.argmin(distances))
        truth.append(person is not None)
        mate.append(owners[best] == person)
        score.append(-float(distances[best]))
    scores = np.array(score)
    return Outcome(np.array(truth), np.array(mate), scores, scores >= -PEER_TOLERANCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-python", help="Python of the environment with face_recognition (omit: Visage only).")
    parser.add_argument("--root", type=Path, default=DATA)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    splits = {"DevTrain": args.root / "pairsDevTrain.txt", "DevTest": args.root / "pairsDevTest.txt"}
    if not all(path.is_file() for path in splits.values()):
        sys.exit(f"LFW View 1 not found under {args.root} (../shared/data/lfw-view1)")

    report: dict[str, list[dict[str, object]]] = {}
    for split, pairs_file in splits.items():
        pairs = read_pairs(pairs_file, args.root / "images")
        started = time.perf_counter()
        embeddings, misses, model = embed_pair_images(pairs, Settings(), workers=args.workers)
        seconds = time.perf_counter() - started
        images = sorted(embeddings)
        encodings = run_peer(args.peer_python, images, args.workers)[0] if args.peer_python else None
        print(f"\n{split}: {len(images)} images embedded in {seconds:.0f} s ({misses} detection misses), "
              f"model {model}; Visage decides at {Settings().gallery.identify_operating_point}")
        print(f"{'protocol':14s} {'system':30s} {'mated':>6s} {'strangers':>9s} {'rank-1':>7s} "
              f"{'FNIR@FPIR1%':>12s} {'own FPIR':>9s} {'own FNIR':>9s}")
        rows = report.setdefault(split, [])
        with tempfile.TemporaryDirectory() as tmp:
            for protocol in protocols(images):
                systems: list[tuple[str, Outcome]] = [
                    (f"visage, {scoring}", visage_outcome(protocol, embeddings, scoring, Path(tmp)))
                    for scoring in ("max", "mean_best2")
                ]
                if encodings is not None:
                    systems.append(("face_recognition (tol 0.6)", peer_outcome(protocol, encodings)))
                for system, outcome in systems:
                    fpir, fnir = outcome.rates(outcome.top_accepted)
                    row = {"protocol": protocol.name, "system": system, "mated": int(outcome.truth.sum()),
                           "strangers": int((~outcome.truth).sum()), "rank1": outcome.rank1(),
                           "fnir_at_fpir_1pct": outcome.fnir_at_fpir(TARGET_FPIR), "own_fpir": fpir,
                           "own_fnir": fnir}
                    rows.append(row)
                    print(f"{protocol.name:14s} {system:30s} {row['mated']:6d} {row['strangers']:9d} "
                          f"{outcome.rank1():7.2%} {row['fnir_at_fpir_1pct']:12.2%} {fpir:9.2%} {fnir:9.2%}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
