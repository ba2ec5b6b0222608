"""CPU seconds and peak memory per stage (issue 26): measured over the loop's process and every process
below it, recorded per stage in the iteration (``usage``), and shown by ``flywheel status``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.workspaces import tiny_workspace

from forge.cli.flywheel import main
from forge.flywheel.state import StateStore, begin_iteration, load_state
from forge.flywheel.timekeeping import Clock
from forge.flywheel.usage import CPU, PEAK_RSS, Meter

MB = 1 << 20
#: CPU seconds the child burns: well above /proc's tick (10 ms) and a loaded machine's noise in what we add.
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"


def test_a_stage_counts_its_childrens_cpu_and_its_own_peak_memory() -> None:
    meter = Meter.start()
    subprocess.run([sys.executable, "-c", BURN], check=True)  # a child that ended: in our reaped time
    block = b"x" * (300 * MB)  # resident: written, not merely reserved
    del block
    used = meter.read()
    assert used[CPU] >= 0.5  # the child's half second, at least
    assert used[PEAK_RSS] >= 300  # the peak, though the block is freed by now
    # the next stage's peak is its own: the high-water mark was reset when it started
    assert Meter.start().read()[PEAK_RSS] < used[PEAK_RSS] - 200


def test_usage_is_recorded_per_stage_over_its_attempts_and_shown_by_status(tmp_path: Path, capsys) -> None:
    ws = tiny_workspace(tmp_path / "ws", "usage")
    store = StateStore(ws)
    clock = Clock()
    with store.edit() as st:
        begin_iteration(st)
    for _attempt in range(2):  # a failed attempt's usage counts, as its seconds do
        clock.start("generate")
        subprocess.run([sys.executable, "-c", BURN], check=True)
        with store.edit() as st:
            clock.stop(st.current)
    used = load_state(ws).current.usage["generate"]
    assert used[CPU] >= 1.0 and used[PEAK_RSS] > 0  # both attempts' CPU; the larger peak
    assert main(["status", "--root", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"stages of iteration 1 so far: generate {load_state(ws).current.timings['generate']:.1f} s, " in out
    assert f"{used[CPU]:.1f} s CPU, {used[PEAK_RSS]:.0f} MB peak" in out
