"""The tuning chart, drawn on the server with matplotlib as SVG: validation loss per epoch, one line per
trial, as MLflow charts a hyperparameter search. The same bytes serve the console and evidence packs
(no timestamps, fixed ids), and a chart is kept by the md5s of the tables it was drawn from."""

from __future__ import annotations

import functools
import io
from collections import defaultdict
from typing import Any


@functools.lru_cache(maxsize=64)
def _drawn(
    key: str, trials: tuple[tuple[int, str, float | None], ...], epochs: tuple[tuple[int, int, float], ...]
) -> bytes:
    del key  # the cache key: the md5s of the tables the rows came from
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plt.rcParams["svg.hashsalt"] = "lineage-console"  # element ids without randomness
    curves: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for trial, epoch, loss in epochs:
        curves[trial].append((epoch, loss))
    completed = [(loss, trial) for trial, state, loss in trials if state == "COMPLETE" and loss is not None]
    best = min(completed)[1] if completed else None
    figure, axes = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    for trial, state, _ in trials:
        points = sorted(curves.get(trial, []))
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        if trial == best:
            axes.plot(xs, ys, color="#1f6feb", linewidth=2.4, marker="o", markersize=3, label=f"trial {trial} (best)")
        elif state == "PRUNED":
            axes.plot(xs, ys, color="#9aa4ae", linewidth=1, linestyle="--")
        else:
            axes.plot(xs, ys, color="#57606a", linewidth=1, alpha=0.8)
    axes.plot([], [], color="#57606a", linewidth=1, label="completed")
    axes.plot([], [], color="#9aa4ae", linewidth=1, linestyle="--", label="pruned")
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation loss (MSE of log1p quantity)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.25)
    axes.legend(loc="upper right", fontsize=8, frameon=False)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(figure)
    return out.getvalue()


def tuning_chart(tuning: dict[str, Any], key: str) -> bytes | None:
    """The chart of a version's tuning section (views.version_view), or None without per-epoch losses."""
    if not tuning.get("epochs") or not tuning.get("trials"):
        return None
    trials = tuple((int(t["trial"]), str(t["state"]), t.get("val_loss")) for t in tuning["trials"])
    epochs = tuple((int(e["trial"]), int(e["epoch"]), float(e["val_loss"])) for e in tuning["epochs"])
    return _drawn(key, trials, epochs)
