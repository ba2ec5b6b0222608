"""``python -m forge.cli.flywheel``: run the flywheel, or inspect and steer it.

    python -m forge.cli.flywheel [--once] [--seed-range A:B] [--no-wandb]   run iterations
    python -m forge.cli.flywheel status [--json]                              where it stands
    python -m forge.cli.flywheel init --preset quick --wandb-group G [...]    a fresh state.yaml
    python -m forge.cli.flywheel retry                                        failed/crashed -> ready
    python -m forge.cli.flywheel stop                                         stop after the current stage
    python -m forge.cli.flywheel archive                                      iterations and archived notebooks
    python -m forge.cli.flywheel sync                                         upload offline W&B runs
    python -m forge.cli.flywheel note N "text"                                a note on iteration N

Every command works on the workspace in the current directory (``--root DIR`` for another),
and ``--root`` may come before or after the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from forge.commandline import FLYWHEEL as PROG
from forge.commandline import ArgumentParser, UsageError, number, parse_seed_range, run_cli
from forge.flywheel.config import MAX_SEED, MAX_SEEDS_PER_ITER, RECIPES
from forge.flywheel.state import WANDB_MODES
from forge.ml.model_presets import PRESETS as MODEL_PRESETS
from forge.ml.settings import WANDB_PROJECT
from forge.oracle.executors import EXECUTORS

if TYPE_CHECKING:  # the status command imports it when it runs (--help stays light)
    from forge.flywheel.status import Snapshot


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="workspace folder holding state.yaml (default: .)")
    parser.add_argument("--once", action="store_true", help="run one iteration, then stop")
    parser.add_argument("--seed-range", metavar="A:B", help="train the next iteration on seeds A..B-1")
    parser.add_argument("--no-wandb", action="store_true", help="no W&B logging for these iterations")
    parser.add_argument("--executor", choices=EXECUTORS, default=None,
                        help="where deals are solved (sets config.hardware.executor in state.yaml)")
    parser.add_argument("--ray-address", metavar="HOST:PORT", default=None,
                        help="Ray cluster to solve deals on (sets config.hardware.ray_address; implies --executor ray)")
    # After a command, --root may be given again; SUPPRESS keeps an absent one from resetting the first.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help="workspace folder holding state.yaml")
    sub = parser.add_subparsers(dest="command", parser_class=ArgumentParser)
    st = sub.add_parser("status", parents=[common], help="status, current iteration and history")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    init = sub.add_parser("init", parents=[common], help="write a fresh state.yaml from a preset")
    init.add_argument("--preset", default="quick", help="tiny, quick or standard (templates/presets)")
    init.add_argument("--wandb-group", required=True, help="W&B group of this flywheel's runs")
    init.add_argument("--wandb-project", default=None, help=f"W&B project (default: {WANDB_PROJECT})")
    init.add_argument("--wandb-mode", default="offline", choices=WANDB_MODES)
    init.add_argument("--start-seed", type=int, default=0, help="first training seed (default 0)")
    init.add_argument("--seeds-per-iter", type=int, help="override the preset's seeds per iteration")
    init.add_argument("--model", default=None, choices=MODEL_PRESETS, help="override the preset's model size")
    init.add_argument("--recipe", default="auto", choices=RECIPES,
                      help="gpu: the preset's GPU recipe (its gpu block: model, batch, precision, compile); "
                           "auto (default): that when torch sees a CUDA GPU; cpu: the preset as it stands")
    init.add_argument("--baseline", help="checkpoint the first iteration fine-tunes from")
    init.add_argument("--pretrain-seeds", metavar="A:B", default=None,
                      help="first train a baseline from scratch on seeds A..B-1 (iteration 0), streamed in chunks")
    init.add_argument("--pretrain-chunk", type=int, default=None,
                      help="deals per pretraining chunk (default: the preset's seeds per iteration)")
    init.add_argument("--force", action="store_true",
                      help="replace an existing state.yaml (kept as a dated backup, state.yaml.<time>.bak)")
    sub.add_parser("retry", parents=[common], help="mark a failed or crashed iteration ready again")
    sub.add_parser("archive", parents=[common], help="every iteration with its metrics and archived notebooks")
    sync = sub.add_parser("sync", parents=[common], help="upload offline W&B runs and record their URLs")
    sync.add_argument("--timeout", type=float, default=None, help="seconds to wait for W&B per run")
    sub.add_parser("stop", parents=[common], help="ask a running loop to stop after its current stage")
    note = sub.add_parser("note", parents=[common], help="keep a note on a recorded iteration (notes.jsonl)")
    note.add_argument("iteration", type=number(int, 0), help="the iteration the note is about")
    note.add_argument("text", help='the note ("" clears it); the history views show it and filter on it')
    return parser


def _check_baseline(path: str, model: str) -> str:
    """The baseline's absolute path, once it is known to be a checkpoint of ``model``'s architecture."""
    from forge.ml.checkpoints import baseline_architecture, same_shape
    from forge.ml.model_presets import PRESETS

    arch = baseline_architecture(path)  # CheckpointError: not a readable checkpoint of this project's model
    want = PRESETS[model]
    if not same_shape(arch, want):
        names = [n for n, c in PRESETS.items() if same_shape(c, arch)]
        hint = f"pass --model {names[0]}" if names else "use a checkpoint of one of the model presets"
        raise UsageError(f"baseline {path} is a {arch.describe()} model, but this flywheel trains {model!r} "
                         f"({want.describe()}); {hint}")
    return str(Path(path).resolve())


def _bounded(rng: range, option: str, most: float | None) -> range:
    """A seed range within MAX_SEED (and at most ``most`` seeds): a bad one is refused here, never recorded."""
    if rng.stop - 1 > MAX_SEED:
        raise UsageError(f"{option}: seeds must be at most {MAX_SEED:,}, got {rng.stop - 1}")
    if most is not None and len(rng) > most:
        raise UsageError(f"{option}: at most {int(most):,} seeds per iteration, got {len(rng):,}")
    return rng


def cmd_init(args: argparse.Namespace) -> int:
    from forge.flywheel.config import load_preset, takes_gpu_recipe
    from forge.flywheel.lock import FlywheelLock, LockHeld
    from forge.flywheel.state import new_state, save_state, set_aside, state_path

    root = Path(args.root)
    exists = state_path(root).exists()
    if exists and not args.force:
        raise UsageError(f"{state_path(root)} exists; pass --force to replace it (the old one is kept as a "
                         "dated backup)")
    if not 0 <= args.start_seed <= MAX_SEED:
        raise UsageError(f"--start-seed must be 0..{MAX_SEED:,}, got {args.start_seed}")
    if args.seeds_per_iter is not None and args.seeds_per_iter < 1:
        raise UsageError(f"--seeds-per-iter must be at least 1, got {args.seeds_per_iter}")
    gpu = takes_gpu_recipe(args.recipe, args.preset, _cuda_present)
    config = load_preset(args.preset, gpu=gpu, seeds_per_iter=args.seeds_per_iter, model=args.model)
    if args.baseline and not Path(args.baseline).is_file():
        raise UsageError(f"baseline checkpoint {args.baseline} not found")
    baseline = _check_baseline(args.baseline, config.training.model) if args.baseline else None
    pretrain = None
    if args.pretrain_seeds:
        from forge.flywheel.records import Pretrain

        if baseline:
            raise UsageError("--pretrain-seeds trains the baseline; it does not go with --baseline")
        rng = _bounded(parse_seed_range(args.pretrain_seeds), "--pretrain-seeds", None)
        chunk = args.pretrain_chunk or config.data.seeds_per_iter
        if chunk < 1:
            raise UsageError(f"--pretrain-chunk must be at least 1, got {chunk}")
        pretrain = Pretrain(seed_range=[rng.start, rng.stop], chunk=chunk)
    elif args.pretrain_chunk:
        raise UsageError("--pretrain-chunk needs --pretrain-seeds")
    kwargs = {"wandb_project": args.wandb_project} if args.wandb_project else {}
    state = new_state(config, args.wandb_group, args.start_seed, baseline, wandb_mode=args.wandb_mode,
                      pretrain=pretrain, **kwargs)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with FlywheelLock(root):
            kept = set_aside(root) if exists else None
            save_state(root, state)
    except LockHeld as exc:
        raise UsageError(f"cannot re-initialise while a loop runs: {exc}; stop it first") from None
    extra = (f", its GPU recipe (model {config.training.model}, batch {config.training.batch_size}, "
             f"{config.hardware.precision}{', compiled' if config.hardware.compile else ''})") if gpu else ""
    extra += f", pretraining on seeds {args.pretrain_seeds} first" if pretrain else ""
    extra += f"; previous state kept as {kept}" if kept else ""
    print(f"initialised {state_path(root)}: preset {config.preset}, group {args.wandb_group}, "
          f"W&B {args.wandb_mode}, first seed {state.next_seed}{extra}")
    print(f"next: {state.next_action}")
    return 0


def _cuda_present() -> bool:
    from forge.ml.devices import on_cuda  # only when asked: it starts torch

    return on_cuda("auto")


def cmd_status(args: argparse.Namespace) -> int:
    from forge.flywheel.status import snapshot
    from forge.ui.text import format_text

    snap = snapshot(args.root, disk=True)
    print(json.dumps(snap.to_dict(), indent=2, default=str) if args.json else format_text(snap))
    if not args.json:
        _print_usage(snap)
    return 0


def _print_usage(snap: Snapshot) -> None:
    """Each stage's seconds, CPU seconds and peak memory: of the iteration under way, and the last recorded."""
    from forge.flywheel.usage import describe

    cur, last = snap.current, snap.history[-1] if snap.history else None
    if cur and cur.usage:
        print(f"stages of iteration {cur.iteration} so far: {describe(cur.usage, cur.timings)}")
    if last and last.get("usage"):
        print(f"stages of iteration {last['iteration']}: {describe(last['usage'], last.get('timings'))}")


def _skip_iri_grammar() -> None:
    """nbformat imports jsonschema, whose format checks import rfc3987_syntax where it is installed (Jupyter's
    event schemas pull it in), and that builds its IRI grammars at import: 1.2-1.7 s of CPU on 2 cores, in
    every loop process. Notebook validation uses no IRI format, so the loop's process goes without it."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # an import of it then fails


def cmd_run(args: argparse.Namespace) -> int:
    _skip_iri_grammar()
    from forge.cli.watch import StageLines, next_steps
    from forge.flywheel.loop import run_loop
    from forge.flywheel.state import load_state, training_seeds
    from forge.ui.loop_hooks import HOOKS

    seeds = None
    if args.seed_range:
        rng = _bounded(parse_seed_range(args.seed_range), "--seed-range", MAX_SEEDS_PER_ITER)
        seeds = training_seeds(load_state(args.root).config, rng)
        if not seeds:
            raise UsageError(f"seed range {args.seed_range} holds only golden seeds")
    updates = {}
    if args.executor or args.ray_address:
        updates["executor"] = args.executor or "ray"
    if args.ray_address:
        updates["ray_address"] = args.ray_address
    lock = threading.Lock()

    def say(msg: str) -> None:  # the loop and the stage-progress thread print whole lines, one at a time
        with lock:
            print(msg, flush=True)

    try:
        with StageLines(args.root, say):
            return run_loop(args.root, once=args.once, seeds=seeds, no_wandb=args.no_wandb, say=say,
                            config_updates=updates, **HOOKS)
    finally:
        say(next_steps(args.root))


def cmd_retry(args: argparse.Namespace) -> int:
    from forge.flywheel.loop import retry

    print(f"ready: {retry(args.root)}")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from forge.ui.archive_index import write_index
    from forge.ui.text import format_archive

    write_index(args.root)
    print(format_archive(args.root))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from forge.flywheel.wandb_sync import still_pending, sync

    synced = sync(args.root, say=lambda msg: print(msg, flush=True), timeout=args.timeout)
    left = still_pending(args.root)
    print(f"{synced} run(s) synced" + (f", {left} still pending" if left else ""))
    return 0 if not left else 1


def cmd_stop(args: argparse.Namespace) -> int:
    from forge.flywheel.loop import request_stop

    print(request_stop(args.root))
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from forge.flywheel.notes import NOTES_FILE, add_note
    from forge.ui.loop_hooks import on_record

    kept = add_note(args.root, args.iteration, args.text)
    on_record(args.root)  # the archive index shows the notes
    print(f"iteration {args.iteration}: {kept!r} kept in {NOTES_FILE}" if kept
          else f"iteration {args.iteration}: note cleared ({NOTES_FILE} keeps the earlier ones)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"status": cmd_status, "init": cmd_init, "retry": cmd_retry, "stop": cmd_stop,
               "archive": cmd_archive, "sync": cmd_sync, "note": cmd_note}.get(args.command, cmd_run)
    if args.command is not None and (args.once or args.seed_range or args.no_wandb or args.executor
                                     or args.ray_address):
        raise UsageError(f"--once, --seed-range, --no-wandb, --executor and --ray-address run the loop; they do "
                         f"not go with {args.command!r}")
    return handler(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
