"""Prepared workspaces: states written directly (no data on disk), for the views of every kind of test."""

from __future__ import annotations

from pathlib import Path

from forge.flywheel.config import load_preset
from forge.flywheel.records import HistoryEntry
from forge.flywheel.state import Current, load_state, new_state, save_state

#: What the prepared failed workspace holds, for assertions on every view of it.
FAILED = {
    "status": "failed",
    "iteration": "3",
    "stage": "train",
    "group": "prepared-group",
    "error": "train: cell 3: RuntimeError: prepared failure 4217",
    "accuracies": ("0.7313", "0.8521"),
    "q_gaps": ("0.6402", "0.3917"),
    # iteration 1 was the best when it was recorded; iteration 2 beat it on val Q-gap but its value error
    # got worse (flagged): 2 alone is the best, its flag shown beside it
    "best": "2",
    "flag": "val value_mae 9.5000 is worse than the best (iteration 1: 8.0000)",
}


def _entry(iteration: int, accuracy: float, q_gap: float, value_mae: float, flags: list[str]) -> HistoryEntry:
    seeds = list(range(4 * (iteration - 1), 4 * iteration))
    return HistoryEntry(iteration=iteration, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1],
                        total_seeds=4 * iteration, val={"accuracy": accuracy, "q_gap": q_gap, "blunder_rate": 0.05,
                                                        "value_mae": value_mae},
                        timings={"total": 90.0 * iteration}, is_best=True, flags=flags)


def failed_workspace(root: Path) -> Path:
    """A workspace whose iteration 3 failed in train after two finished iterations (no data on disk)."""
    root.mkdir(parents=True, exist_ok=True)
    state = new_state(load_preset("tiny"), FAILED["group"])
    state.history = [_entry(1, 0.7313, 0.6402, 8.0, []), _entry(2, 0.8521, 0.3917, 9.5, [FAILED["flag"]])]
    state.next_seed = 8
    state.current = Current(iteration=3, seeds=[8, 9, 10, 11], seed_range=[8, 12],
                            stages_completed=["generate", "tokenize"], stage="train",
                            started_at="2025-01-01T00:00:00+00:00", pid=999_999, host="elsewhere",
                            heartbeat="2025-01-01T00:05:00+00:00")
    state.status = "failed"
    state.last_error = FAILED["error"]
    state.next_action = "read archive/iter-0003/03_train.ipynb, fix the cause, then retry"
    save_state(root, state)
    return root


# ------------------------------------------------------- a reviewed history (tests/test_review.py and the browser)

REVIEW_FLAG = "val value_mae 9.5000 is worse than the best (iteration 1: 8.0000)"


def reviewed_entry(i: int, gap: float, value_mae: float, is_best: bool, flags: list[str], lr: float = 3e-4,
           depth: bool = True, epochs: int = 2) -> HistoryEntry:
    seeds = list(range(4 * (i - 1), 4 * i))
    val = {"q_gap": gap, "accuracy": 0.8 + i / 100, "blunder_rate": 0.05, "value_mae": value_mae,
           "q_gap/notrump": gap / 2, "q_gap/sixes": gap * 2}
    if depth:
        val.update({"q_gap/depth0": gap * 3, "q_gap/depth1": gap / 3})
    config = load_preset("tiny").to_dict() | {"lr": lr, "epochs": epochs}
    return HistoryEntry(iteration=i, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1], total_seeds=4 * i,
                        config=config, val=val, test={"q_gap": gap + 0.1}, playout={"playout_points_lost": 12.0 - i},
                        is_best=is_best, flags=flags, timings={"total": 60.0 * i},
                        notebooks={"train": f"archive/iter-{i:04d}/03_train.ipynb"},
                        by_hand=["train"] if i == 3 else [])


def reviewed_history() -> list[HistoryEntry]:
    return [reviewed_entry(1, 0.60, 8.0, True, []), reviewed_entry(2, 0.50, 9.5, True, [REVIEW_FLAG]),
            reviewed_entry(3, 0.55, 9.0, False, ["val q_gap 0.5500 is worse than the best (iteration 2: 0.5000)"],
                           lr=1e-3)]


def reviewed_workspace(root: Path, entries: list[HistoryEntry] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    state = new_state(load_preset("tiny"), "review")
    state.history = reviewed_history() if entries is None else entries
    state.next_seed = 4 * len(state.history)
    save_state(root, state)
    for h in state.history:
        for nb in h.notebooks.values():  # an archived notebook and its HTML, for the links
            (root / nb).parent.mkdir(parents=True, exist_ok=True)
            (root / nb).write_text("{}")
            (root / nb).with_suffix(".html").write_text("<html></html>")
    return root


def tiny_workspace(root: Path, group: str) -> Path:
    """A fresh ``tiny`` flywheel in ``root`` whose state.yaml has a good backup beside it."""
    save_state(root, new_state(load_preset("tiny"), group))
    save_state(root, load_state(root))
    return root
