"""Disk bounded by a retention policy: what an iteration keeps once newer ones are recorded.

A ``quick`` iteration leaves several MB (executed notebooks and their HTML pages, checkpoints,
a W&B run, tokens of its deals); a loop that runs for a week would fill a disk. After each
iteration is recorded the loop calls :func:`prune`, which, for every recorded iteration the policy
no longer keeps whole (``config.loop.retain_last`` newest ones and, with ``retain_best``, the best
by the primary metric are kept whole), compresses its executed notebooks and stage logs (gzip),
deletes their HTML pages, its checkpoints and the W&B run files that are no longer needed, and,
once it has left the replay window, the token-cache entries of its deals. What an iteration keeps
whatever its age: its record (history entry), its stage results and its training curve
(``metrics.csv``).

Never touched: the iteration in progress, the newest recorded iteration's checkpoint (the next
one starts from it), the best iteration's (``retain_best``), golden shards and their tokens,
token-cache entries of the replay window (and any entry this module cannot attribute to an
iteration outside the window).

Each step is idempotent (a file compressed by temp file and rename, then its original removed; a
deletion of what is already gone is a no-op) and an iteration is marked done (``.pruned``, then
``.tokens-released``) only after its last step, so a kill mid-prune leaves a workspace whose
views still work (a notebook is there plain or compressed, never neither) and the next prune
finishes the job.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.atomic import atomic_write, atomic_write_text
from forge.flywheel.paths import Workspace
from forge.flywheel.state import State

#: Marker files in an iteration's run folder: its files are pruned; its deals' tokens released.
PRUNED = ".pruned"
TOKENS_RELEASED = ".tokens-released"
#: Suffix of a compressed notebook or log (``03_train.ipynb`` -> ``03_train.ipynb.gz``).
GZ = ".gz"
#: Disk use over time (one JSON line per prune), for ``status``'s rate; the newest lines kept.
DISK_LOG = "disk.jsonl"
DISK_LOG_LINES = 500
#: The markers' summary (a cache of them): runs/retention.json.
#: A loop or kernel log larger than this keeps only its newest half (rotated in place).
LOG_MAX_BYTES = 8 * 2**20


@dataclass
class Pruned:
    """What one :func:`prune` did."""

    iterations: list[int] = field(default_factory=list)  # whose files were pruned
    released: list[int] = field(default_factory=list)  # whose token-cache entries were released
    freed: int = 0  # bytes
    logs: list[str] = field(default_factory=list)  # loop/kernel logs deleted or rotated

    def __bool__(self) -> bool:
        return bool(self.iterations or self.released or self.logs)


def kept_whole(state: State) -> set[int]:
    """Recorded iterations the policy keeps whole: the newest ``retain_last`` (always the newest
    one: the next iteration starts from its checkpoint) and, with ``retain_best``, the best."""
    cfg = state.config
    keep = {h.iteration for h in state.history.tail(max(cfg.loop.retain_last, 1))}  # reads only those lines
    if cfg.loop.retain_best:
        best = state.history.best()  # from the history's summary
        if best is not None:
            keep.add(best.iteration)
    return keep


def in_window(state: State) -> set[int]:
    """Recorded iterations whose deals the next iteration trains on again (``replay_iters``):
    the token cache keeps their entries."""
    n = state.config.data.replay_iters
    return {h.iteration for h in state.history[-n:]} if n > 0 else set()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> int:
    """Delete a file or a folder; the bytes freed (0 if it was gone)."""
    if path.is_dir() and not path.is_symlink():
        freed = sum(_size(p) for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
        return freed
    freed = _size(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return freed


IMAGE_PRUNED = "[image pruned by the retention policy (docs/disk.md): config.loop.retain_images]"


def without_images(notebook: bytes) -> bytes:
    """An executed notebook with each image output replaced by a line saying so (its text, tables and
    HTML kept): plots are most of an archived notebook's bytes and do not compress."""
    nb = json.loads(notebook)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data")
            if isinstance(data, dict) and any(k.startswith("image/") for k in data):
                for k in [k for k in data if k.startswith("image/")]:
                    del data[k]
                data["text/plain"] = IMAGE_PRUNED
                out.get("metadata", {}).clear()
    return json.dumps(nb, indent=1, ensure_ascii=False).encode("utf-8")


def compress(path: Path, images: bool = True) -> int:
    """``path`` -> ``path.gz`` (temp file and rename, then the original removed); bytes freed.
    ``images`` False: a notebook's images are dropped first (:func:`without_images`).

    Killed between the two, both exist: the next call compresses again over the same name.
    """
    out = path.with_name(path.name + GZ)
    before = _size(path)

    def write(fh: Any) -> None:
        with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as gz:
            if images:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, gz, 2**20)
            else:
                gz.write(without_images(path.read_bytes()))

    atomic_write(out, write)
    path.unlink()
    return before - _size(out)


def _leftover_temps(folder: Path) -> int:
    """Temp files of atomic writes a killed prune left behind in a pruned iteration's folder."""
    freed = 0
    if folder.is_dir():
        for tmp in folder.rglob(".*.tmp"):
            freed += _remove(tmp)
    return freed


def _prune_files(ws: Workspace, state: State, iteration: int) -> int:
    """One iteration's files, as an iteration the policy no longer keeps whole; bytes freed."""
    run, archive = ws.run_dir(iteration), ws.archive(iteration)
    freed = _leftover_temps(archive) + _leftover_temps(run)
    # executed notebooks (the iteration's and its failed attempts'): compressed; their HTML pages: gone
    for page in sorted(archive.rglob("*.html")) if archive.is_dir() else []:
        freed += _remove(page)
    images = state.config.loop.retain_images > 0 and iteration % state.config.loop.retain_images == 0
    for book in sorted(archive.rglob("*.ipynb")) if archive.is_dir() else []:
        freed += compress(book, images=images)
    for log in sorted((run / "logs").glob("*.log")):
        freed += compress(log)
    # checkpoints: the kept one and Lightning's own (last/best, with optimiser state)
    freed += _remove(run / "model.ckpt")
    for ckpt_dir in sorted(run.glob("**/checkpoints")):
        freed += _remove(ckpt_dir)
    freed += _prune_wandb(ws, state, iteration)
    return freed


def _prune_wandb(ws: Workspace, state: State, iteration: int) -> int:
    """The iteration's W&B run: gone once synced (its URL is recorded); else only its debug logs
    (``wandb sync`` uploads its metrics, config and curve; its model file was the checkpoint, pruned)."""
    entry = state.entry(iteration)
    info = (entry.wandb if entry is not None else None) or {}
    folder = ws.run_dir(iteration) / "wandb"
    if not folder.is_dir():
        return 0
    if info.get("url"):
        return _remove(folder)
    freed = 0
    for logs in sorted(folder.glob("*run-*/logs")):
        freed += _remove(logs)
    for debug in folder.glob("debug*.log"):  # links to the run's debug logs
        freed += _remove(debug)
    return freed


def _train_shas(ws: Workspace, iteration: int) -> set[str]:
    """Content digests of an iteration's training deals, as its generate stage recorded them."""
    from forge.flywheel.stages import generate

    result = generate.STAGE.read(ws, iteration)
    if result is None:
        return set()
    train = set(result.train_shards)
    return {sha for rel, sha in result.outputs.shards.items() if rel in train}


def cache_entries(ws: Workspace, sha: str) -> list[Path]:
    """Every token-cache entry of one shard, at any sampling (``v<F>/<sha[:2]>/<sha>-k..-g...npz``)."""
    return sorted(ws.token_cache.glob(f"v*/{sha[:2]}/{sha}-*"))


def _release_tokens(ws: Workspace, iteration: int, needed: set[str]) -> int:
    freed = 0
    for sha in sorted(_train_shas(ws, iteration) - needed):
        for entry in cache_entries(ws, sha):
            freed += _remove(entry)
    return freed


def _mark(path: Path, freed: int, size: int | None = None) -> None:
    """Mark a step done; ``size``: the pruned iteration's bytes from now on (its folders do not change
    again), so that :func:`disk_total` need not walk them."""
    data = {"at": time.time(), "freed": freed, **({"bytes": size} if size is not None else {})}
    atomic_write_text(path, json.dumps(data) + "\n", fsync=False)


def rotate_logs(ws: Workspace, keep: int, max_bytes: int = LOG_MAX_BYTES) -> list[str]:
    """Loop logs (``runs/loop-*.log``) and kernel logs (``runs/logs/kernel-*.log``): the newest ``keep``
    of each kind kept, any of those over ``max_bytes`` cut to its newest half (in place: a log a
    process still appends to goes on at its new end). Returns what was deleted or cut."""
    done = []
    for pattern, folder in (("loop-*.log", ws.root / "runs"), ("kernel-*.log", ws.loop_logs)):
        logs = sorted(folder.glob(pattern))
        for old in logs[:-keep] if keep > 0 else logs:
            if not _in_use(old):
                _remove(old)
                done.append(f"deleted {ws.rel(old)}")
        for log in logs[-keep:] if keep > 0 else []:
            if _size(log) > max_bytes:
                _cut(log, max_bytes // 2)
                done.append(f"cut {ws.rel(log)} to its newest {max_bytes // 2 // 2**20} MB")
    return done


def _in_use(path: Path) -> bool:
    """Whether this process writes ``path`` as its stdout or stderr (the loop's own log)."""
    try:
        st = path.stat()
    except OSError:
        return False
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            own = os.fstat(fd)
            if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
                return True
    return False


def _cut(path: Path, keep_bytes: int) -> None:
    """Keep the newest ``keep_bytes`` of a log, from a line start, in place (writers append with
    O_APPEND, so they go on at the new end; a few lines written meanwhile may be lost)."""
    with open(path, "rb") as fh:
        fh.seek(max(_size(path) - keep_bytes, 0))
        tail = fh.read()
    start = tail.find(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(b"[older lines removed: log rotated]\n" + tail[start:])


def prune(root: str | os.PathLike, state: State) -> Pruned:
    """Apply the retention policy to the recorded iterations (idempotent; finishes an interrupted
    prune). Call it only while holding the workspace (the loop does, after recording an iteration)."""
    ws = Workspace.at(root)
    cfg = state.config
    done = Pruned()
    if cfg.loop.retention == "keep":
        return done
    whole, window = kept_whole(state), in_window(state)
    if state.current is not None:  # never the iteration under way (it is not in history anyway)
        whole.add(state.current.iteration)
    summary = read_summary(ws)
    pruned, released = summary.pruned, summary.released
    known = (len(pruned), len(released))
    needed: set[str] | None = None
    synced_since = 0
    for entry in _to_visit(state, summary):
        it = entry.iteration
        if it not in whole and it not in pruned:
            run = ws.run_dir(it)
            size = _pruned_size(run)
            if size is None:  # not pruned yet, or a prune a kill interrupted: (again) from the start
                freed = _prune_files(ws, state, it)
                size = tree_size(run) + tree_size(ws.archive(it))
                _mark(run / PRUNED, freed, size)
                done.iterations.append(it)
                done.freed += freed
            pruned[it] = size
        # synced after it was pruned (`sync` removes the summary, so every iteration is visited once): its
        # run's files go
        if it in pruned and (entry.wandb or {}).get("url"):
            folder = ws.run_dir(it) / "wandb"
            if folder.is_dir():
                freed = _remove(folder)
                pruned[it] = max(pruned[it] - freed, 0)
                done.freed += freed
                synced_since += 1
        if it not in window and it not in released:
            run = ws.run_dir(it)
            if not (run / TOKENS_RELEASED).is_file():
                if needed is None:  # the window's deals (a seed trained twice included) keep their tokens
                    needed = set().union(*(_train_shas(ws, w) for w in window)) if window else set()
                freed = _release_tokens(ws, it, needed)
                _mark(run / TOKENS_RELEASED, freed)
                done.released.append(it)
                done.freed += freed
            released.add(it)
    last = state.history.summary.last_iteration
    # what a later pass must look at again among the iterations visited: those kept (whole or for the
    # window) and those pruned whose W&B run is not synced yet; the rest is settled for good
    held = {it for it in (whole | window) if last is not None and it <= last}
    if (len(pruned), len(released)) != known or synced_since or held != summary.held or last != summary.settled:
        summary.held, summary.settled = held, last
        write_summary(ws, summary)
    done.logs = rotate_logs(ws, cfg.loop.retain_logs)
    # W&B's artifact cache (runs/wandb/cache, see forge.flywheel.tracking.wandb_dirs): copies of what was
    # uploaded or downloaded, never needed again by the loop; no W&B run is open between iterations
    done.freed += _remove(ws.root / "runs" / "wandb" / "cache")
    return done


@dataclass
class Summary:
    """``runs/retention.json``: which iterations' markers say pruned (with their sizes) and released, so
    that a prune and the disk figure do not read every iteration's folder. Only a cache: the markers
    are the truth, and a summary lost or damaged is rebuilt from them."""

    pruned: dict[int, int] = field(default_factory=dict)  # iteration -> its bytes once pruned
    released: set[int] = field(default_factory=set)
    # the last recorded iteration a pass visited (None: visit them all), and the iterations up to it that
    # a later pass must visit again: so that a pass reads only the history's newest lines
    settled: int | None = None
    held: set[int] = field(default_factory=set)


def _to_visit(state: State, summary: Summary) -> list[Any]:
    """The history entries a pass looks at: those recorded since the last pass, and the ones it held
    (kept whole, in the window, or pruned with an unsynced W&B run); all of them without a summary."""
    if summary.settled is None:
        return list(state.history)
    newer = []
    for entry in reversed(state.history):  # pages backwards: only the newest lines are read
        if entry.iteration <= summary.settled:
            break
        newer.append(entry)
    held = [state.history.entry(it) for it in sorted(summary.held)]
    return [e for e in held if e is not None] + newer[::-1]


def _summary_path(ws: Workspace) -> Path:
    return ws.retention_summary


def read_summary(ws: Workspace) -> Summary:
    try:
        data = json.loads(_summary_path(ws).read_text())
        settled = data.get("settled")
        return Summary({int(k): int(v) for k, v in data["pruned"].items()}, {int(i) for i in data["released"]},
                       int(settled) if settled is not None else None, {int(i) for i in data.get("held", [])})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Summary()


def write_summary(ws: Workspace, summary: Summary) -> None:
    atomic_write_text(_summary_path(ws), json.dumps({"pruned": {str(k): v for k, v in sorted(summary.pruned.items())},
                                                     "released": sorted(summary.released),
                                                     "settled": summary.settled, "held": sorted(summary.held)}),
                      fsync=False)


# ------------------------------------------------------------------------------------- disk over time


def disk_total(ws: Workspace) -> int:
    """Bytes under the workspace (file sizes; links not followed). A pruned iteration's folders count
    as the prune measured them (they do not change again: :class:`Summary`), so that the walk does not
    grow with the history."""
    total = tree_size(ws.root, skip={"runs", "archive"})
    pruned = read_summary(ws).pruned
    runs, archive = ws.root / "runs", ws.root / "archive"
    with_run: set[str] = set()
    try:
        with os.scandir(runs) as entries:
            for e in entries:
                if e.name.startswith("iter-") and e.is_dir(follow_symlinks=False):
                    with_run.add(e.name)
                    number = e.name[5:]
                    size = pruned.get(int(number)) if number.isdigit() else None
                    total += size if size is not None else tree_size(Path(e.path)) + tree_size(archive / e.name)
    except OSError:
        pass
    total += tree_size(runs, skip_iterations=True) + tree_size(archive, skip_iterations=True)
    try:
        with os.scandir(archive) as entries:  # an iteration's archive without its run folder
            total += sum(tree_size(Path(e.path)) for e in entries
                         if e.name.startswith("iter-") and e.name not in with_run)
    except OSError:
        pass
    return total


def _pruned_size(run: Path) -> int | None:
    try:
        return int(json.loads((run / PRUNED).read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def tree_size(path: Path, skip: set[str] | None = None, skip_iterations: bool = False) -> int:
    """Bytes under ``path``, less its entries named in ``skip`` (and ``iter-*`` folders, ``skip_iterations``)."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for e in entries:
                if (skip and e.name in skip) or (skip_iterations and e.name.startswith("iter-")):
                    continue
                if e.is_dir(follow_symlinks=False):
                    total += tree_size(Path(e.path))
                elif e.is_file(follow_symlinks=False):
                    total += e.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


def record_disk(ws: Workspace, iteration: int, total: int | None = None, at: float | None = None) -> None:
    """Append the workspace's size now to ``runs/disk.jsonl`` (its newest lines kept), for the rate."""
    path = ws.root / "runs" / DISK_LOG
    line = json.dumps({"at": round(at if at is not None else time.time(), 1), "iteration": iteration,
                       "bytes": disk_total(ws) if total is None else total})
    lines = read_disk_log(ws, raw=True)
    lines.append(line)
    if len(lines) > 2 * DISK_LOG_LINES:
        atomic_write_text(path, "\n".join(lines[-DISK_LOG_LINES:]) + "\n", fsync=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(line + "\n")


def read_disk_log(ws: Workspace, raw: bool = False) -> list[Any]:
    """The disk log's samples (``raw``: its lines); a damaged line is skipped."""
    try:
        text = (ws.root / "runs" / DISK_LOG).read_text()
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.strip()]
    if raw:
        return lines
    out = []
    for line in lines:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            d = json.loads(line)
            out.append((float(d["at"]), int(d["iteration"]), int(d["bytes"])))
    return out


#: The span the rate is measured over: the newest samples within a day.
RATE_SPAN_S = 86400.0


def disk_rate(samples: Iterable[tuple[float, int, int]], span: float = RATE_SPAN_S) -> dict[str, float | None] | None:
    """Growth at the current rate, from the disk log's samples within ``span`` of the newest:
    bytes per day and per iteration; None with fewer than two samples or no time between them."""
    samples = sorted(samples)
    if len(samples) < 2:
        return None
    newest = samples[-1]
    recent = [s for s in samples if newest[0] - s[0] <= span]
    first = recent[0] if len(recent) >= 2 else samples[-2]
    seconds, iterations = newest[0] - first[0], newest[1] - first[1]
    grown = newest[2] - first[2]
    if seconds <= 0:
        return None
    return {"bytes_per_day": grown / seconds * 86400.0,
            "bytes_per_iteration": grown / iterations if iterations > 0 else None,
            "over_s": seconds, "over_iterations": iterations}


def apply(root: str | os.PathLike, state: State, say: Any = print, iteration: int | None = None) -> Pruned | None:
    """The loop's hook, once an iteration is recorded (``iteration``) or as a loop starts (None: finish
    an interrupted prune): prune, note the workspace's size for the rate, say what was freed. A
    failure is a warning (the iteration is recorded; the next prune tries again), never a failed loop."""
    ws = Workspace.at(root)
    try:
        done = prune(ws.root, state)
        if iteration is not None:
            record_disk(ws, iteration)
    except OSError as exc:
        say(f"  retention: not applied this time ({exc}); the next iteration tries again")
        return None
    if done.iterations or done.released:
        what = []
        if done.iterations:
            what.append(f"pruned iteration(s) {_ranges(done.iterations)}")
        if done.released:
            what.append(f"released the tokens of {_ranges(done.released)}")
        say(f"  retention: {'; '.join(what)}: {done.freed / 2**20:.1f} MB freed (docs/disk.md)")
    return done


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    for n in sorted(numbers):
        if parts and n == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{n}"
        else:
            parts.append(str(n))
    return ", ".join(parts)
