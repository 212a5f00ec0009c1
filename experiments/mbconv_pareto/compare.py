"""Compare the early-stopping on/off runs of run.sh: time, trials, hypervolume, fronts."""

from __future__ import annotations

import json
from pathlib import Path

import nas

HERE = Path(__file__).resolve().parent / "runs"


def main() -> None:
    runs = {}
    for mode in ("on", "off"):
        run = HERE / mode
        doc = json.loads((run / "pareto.json").read_text())
        rows = nas.load_trials(run, study_name=doc["study_name"])
        train = sum(r.seconds.get("train", 0.0) for r in rows)
        runs[mode] = (doc, rows, train, int((run / "wall_seconds").read_text()))
    # One reference latency for both runs, so their hypervolumes compare.
    ref = 1.1 * max(r.latency_ms for _, rows, _, _ in runs.values() for r in rows if r.evaluated)
    print(
        f"| early stopping | wall s | training s | complete | pruned | front | hypervolume (ref {ref:.3f} ms) | best accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, (doc, rows, train, wall) in runs.items():
        front = nas.pareto_front(rows)
        hv = nas.hypervolume([(r.accuracy, r.latency_ms) for r in front], ref)
        best = max(r.accuracy for r in front)
        print(
            f"| {mode} | {wall} | {train:.0f} | {doc['counts'].get('COMPLETE', 0)} | "
            f"{doc['counts'].get('PRUNED', 0)} | {len(front)} | {hv:.4f} | {100 * best:.1f}% |"
        )


if __name__ == "__main__":
    main()
