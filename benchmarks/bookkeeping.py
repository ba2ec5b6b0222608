"""The flywheel's bookkeeping against the history's length (``benchmarks/flywheel.py --sections state``).

For each size a workspace is made from the recorded version-2 fixture (tests/fixtures/state-v2: six
real-shaped entries, a config change, a failed attempt, a stage by hand), its history grown to that
many entries by writing history.jsonl lines directly (10,000 in about a second), then measured:

heartbeat     one beat of the loop's heartbeat (median of 20)
iteration     an iteration's own bookkeeping, everything outside the stages' work: the state edits the
              loop makes (begin, each stage's start and end, the record), the state each stage's kernel
              reads and the entries it asks for (previous, replay window, best), the stop condition
              (median of 3 iterations, each recorded)
status        ``status`` (snapshot and text), the panel's HTML, the archive index and 06_compare's first
first render  cells (runs, workspaces, the default pair, trends), each in a fresh process: the call's own
              time, and for status the whole command (Python's start and imports included)
full read     every entry read and validated (what no view does at first any more)

    python benchmarks/flywheel.py --sections state [--state-sizes 10,10000]
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from forge.flywheel.history import History, Summary, carried_of, compact
from forge.flywheel.lock import Heartbeat
from forge.flywheel.paths import HISTORY_FILE
from forge.flywheel.records import PRIMARY_METRIC, better
from forge.flywheel.stages import REGISTRY, tokenize
from forge.flywheel.state import StateStore, begin_iteration, finish_recording, load_state, save_state

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "state-v2"


def grow(ws: Path, size: int) -> None:
    """A workspace whose history holds ``size`` entries, cycling through the fixture's."""
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    state = load_state(FIXTURE)
    template = list(state.history)
    state.current, state.status, state.last_error = None, "ready", None
    n = len(template)
    # each template's line once (after the template before it), then only the iteration's own fields change
    compacted = {(k, k == 0): compact(template[k], carried_of(template[k - 1]) if k else None, k == 0)
                 for k in range(n)}
    compacted[(0, False)] = compact(template[0], carried_of(template[-1]), False)
    lines, best = [], (None, None)
    for k in range(size):
        line = dict(compacted[(k % n, k == 0)])
        it = k + 1
        seeds = list(range(4 * k, 4 * k + 4))
        line.update(iteration=it, seeds=seeds, seed_range=[seeds[0], seeds[-1] + 1], total_seeds=4 * it,
                    checkpoint=f"runs/iter-{it:04d}/model.ckpt", started_from=f"iteration {k}" if k else "scratch")
        line["val"] = {**line["val"], "q_gap": line["val"]["q_gap"] + 1.0 / it}  # improves slowly: bests spread out
        value = line["val"]["q_gap"]
        if best[1] is None or better(PRIMARY_METRIC[1], value, best[1]):
            best = (it, value)
        lines.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    carried = carried_of(template[(size - 1) % n])
    data = b"".join(lines)
    (ws / HISTORY_FILE).write_bytes(data)
    summary = Summary(entries=size, bytes=len(data), last_iteration=size, total_seeds=4 * size,
                      best_iteration=best[0], best_value=best[1], last_config=carried["config"],
                      last_provenance=carried["provenance"])
    state.history = History(summary=summary, path=ws / HISTORY_FILE)
    state.next_seed = 4 * size
    state.__dict__["migrated_from"] = None
    save_state(ws, state)


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def one_iteration(ws: Path, store: StateStore) -> None:
    """The bookkeeping of one iteration as the loop and the stages' kernels do it, without the work."""
    from forge.flywheel.context import context
    from forge.flywheel.loop import stop_reason

    with store.edit() as st:
        cur = begin_iteration(st)
    for name in REGISTRY:
        with store.edit() as st:
            st.current.stage = name
        ctx = context(ws)  # what the stage's kernel reads
        ctx.previous()
        ctx.replay_seeds()
        if name == "tokenize":
            tokenize.window(ctx)  # its fingerprint's inputs: the replay window's recorded shards
        if name == "evaluate":
            ctx.state.history.best(before=ctx.iteration)
        with store.edit() as st:
            st.current.stages_completed.append(name)
            st.current.timings[name] = 1.0
            st.current.stage = None
    last = store.state.history[-1]
    entry = dataclasses.replace(last, iteration=cur.iteration, seeds=cur.seeds, seed_range=cur.seed_range,
                                total_seeds=store.state.total_seeds + len(cur.seeds))
    with store.edit() as st:
        st.history.append(entry)
        finish_recording(st, entry)
    stop_reason(store.state)


_FIRST = {
    "status": "from forge.flywheel.status import snapshot\nfrom forge.ui.text import format_text\n"
              "t=time.perf_counter(); format_text(snapshot(ws))",
    "panel": "from forge.ui.panel import render\nt=time.perf_counter(); render(ws)",
    "archive index": "from forge.ui.archive_index import write_index\nt=time.perf_counter(); write_index(ws)",
    "06_compare": "from forge.ui.views import compare\nt=time.perf_counter(); runs = compare.load_runs([ws])\n"
                  "compare.workspaces_html(runs); compare.pair_html(*compare.default_pair(runs)); "
                  "compare.trend_figure(runs)",
    "full read": "from forge.flywheel.state import load_state\nt=time.perf_counter(); list(load_state(ws).history)",
}


def first_render(ws: Path, what: str) -> float:
    """Seconds the view's own call takes in a fresh process (imports done first, not counted)."""
    code = f"import time, sys\nws = sys.argv[1]\n{_FIRST[what]}\nprint(time.perf_counter() - t)"
    res = subprocess.run([sys.executable, "-c", code, str(ws)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")
    return float(res.stdout.strip().splitlines()[-1])


def command_wall(ws: Path) -> float:
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "forge.cli.flywheel", "status"], cwd=ws, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"status failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t


def run(root: Path, sizes: list[int], load: object) -> None:
    print("\nstate: the bookkeeping against the history's length (ms; views: a fresh process, first render)")
    cols = ["entries", "history KB", "state.yaml KB", "heartbeat", "iteration", "status", "status cmd", "panel",
            "archive index", "06_compare", "full read", "grow s"]
    print("  ".join(f"{c:>13s}" for c in cols) + "   load")
    for size in sizes:
        ws = root / f"state-{size}"
        t = time.perf_counter()
        grow(ws, size)
        made = time.perf_counter() - t
        store = StateStore(ws)
        with store.edit() as st:
            begin_iteration(st)
        heartbeat = median_ms(Heartbeat(store).beat, 20)
        with store.edit() as st:
            st.current, st.status = None, "ready"
        iteration = median_ms(functools.partial(one_iteration, ws, store), 3)
        views = {w: 1000 * first_render(ws, w) for w in _FIRST}
        status_cmd = 1000 * command_wall(ws)
        hist_kb = (ws / HISTORY_FILE).stat().st_size / 1024
        state_kb = (ws / "state.yaml").stat().st_size / 1024
        row = [size, hist_kb, state_kb, heartbeat, iteration, views["status"], status_cmd, views["panel"],
               views["archive index"], views["06_compare"], views["full read"], made]
        print("  ".join(f"{v:13,.0f}" if isinstance(v, int) else f"{v:13,.1f}" for v in row) + f"   {load()[5:]}")
