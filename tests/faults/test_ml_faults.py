"""ML data and checkpoint faults (issue 10, faults 1, 9, 11 and 15): corrupt or diverged weights
and corrupt datasets are refused by name, never evaluated or trained on; user mistakes are one line."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from forge.cli import eval as eval_cli
from forge.cli import tokenize as tokenize_cli
from forge.commandline import run_cli
from forge.ml.checkpoints import (
    SAFE_GLOBALS,
    WEIGHTS_SHA256,
    CheckpointError,
    baseline_architecture,
    checkpoint_info,
    read_checkpoint,
    weights_sha256,
)
from forge.ml.data import load_tensors
from forge.ml.datamodule import DominoDataModule
from forge.ml.evaluate import NonFiniteError, evaluate_model
from forge.ml.loading import load_module
from forge.ml.module import DominoModule
from forge.ml.store import MANIFEST, StoreError, build_dataset, load_split
from forge.oracle.shard import write_shard
from forge.oracle.solve import solve


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("shards")
    return {"train": [write_shard(solve(s, 6, 3), out) for s in range(3)],
            "val": [write_shard(solve(s, 6, 3), out) for s in (100, 101)]}


@pytest.fixture(scope="module")
def dataset(shards, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "data"
    build_dataset(shards, out, 60, 0, progress=False)
    return out


@pytest.fixture
def data(dataset, tmp_path) -> Path:
    """A private copy of the dataset, free to corrupt."""
    out = tmp_path / "data"
    for path in dataset.rglob("*"):
        if path.is_file():
            (out / path.relative_to(dataset)).parent.mkdir(parents=True, exist_ok=True)
            (out / path.relative_to(dataset)).write_bytes(path.read_bytes())
    return out


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory) -> Path:
    """A checkpoint as Lightning writes it for DominoModule, after one real training step."""
    torch.manual_seed(0)
    module = DominoModule.from_preset("tiny")
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, datamodule=DominoDataModule(dataset, batch_size=32))
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def _raw(path: Path) -> dict:
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(path, weights_only=True)


def _eval_cli(checkpoint: Path, data: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forge.cli.eval", "--checkpoint", str(checkpoint),
                           "--data", str(data)], capture_output=True, text=True, cwd=cwd, timeout=120)


def _one_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


def _eval_one_line(capsys, checkpoint: Path, data: Path, *words: str) -> None:
    """The eval command's main, in-process, through the same run_cli as the real command."""
    rc = run_cli(eval_cli.main, ["--checkpoint", str(checkpoint), "--data", str(data)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and all(w in err for w in words), err


# ------------------------------------------------------------------ checkpoints (faults 1, 9, 11)


def test_a_checkpoint_carries_the_checksum_of_its_weights(checkpoint):
    raw = _raw(checkpoint)
    assert raw[WEIGHTS_SHA256] == weights_sha256(raw["state_dict"])
    assert checkpoint_info(checkpoint).checksum


def test_one_flipped_weight_bit_in_the_file_is_refused(checkpoint, tmp_path):
    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as z:  # the first tensor's bytes, stored uncompressed
        member = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 4)
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26 : member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len] ^= 0x01
    flipped = tmp_path / "flipped.ckpt"
    flipped.write_bytes(bytes(data))
    raw = _raw(flipped)  # torch itself reads the damaged file without a word
    assert weights_sha256(raw["state_dict"]) != raw[WEIGHTS_SHA256]
    for read in (read_checkpoint, load_module, checkpoint_info):
        with pytest.raises(CheckpointError, match=f"{flipped}.*checksum"):
            read(flipped)


def test_non_finite_weights_are_refused_even_with_a_matching_checksum(checkpoint, data, tmp_path, capsys):
    raw = _raw(checkpoint)
    key = next(k for k in raw["state_dict"] if k.endswith("linear1.weight"))
    raw["state_dict"][key][0, 0] = float("nan")
    raw[WEIGHTS_SHA256] = weights_sha256(raw["state_dict"])  # a diverged run saves what it has
    diverged = tmp_path / "diverged.ckpt"
    torch.save(raw, diverged)
    with pytest.raises(CheckpointError, match=f"{diverged}: 1 of .* NaN or infinity"):
        load_module(diverged)
    _eval_one_line(capsys, diverged, data, str(diverged), "NaN or infinity")


def test_a_model_with_non_finite_outputs_is_never_scored(checkpoint, data):
    model = load_module(checkpoint).model
    with torch.no_grad():
        model.value_head.bias.fill_(float("inf"))
    tensors = load_tensors(data, "val")
    with pytest.raises(NonFiniteError, match="NaN or infinity"):
        evaluate_model(model, tensors)
    assert "q_gap" in evaluate_model(model, tensors, with_value=False)  # the policy alone is fine


def test_an_empty_checkpoint_is_one_line(data, tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="empty file"):
        read_checkpoint(empty)
    _one_line(_eval_cli(empty, data, tmp_path), str(empty), "empty file")


def test_a_text_file_is_not_a_baseline(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("my best model\n")
    for vet in (checkpoint_info, baseline_architecture):
        with pytest.raises(CheckpointError, match=f"{text}: not a readable checkpoint"):
            vet(text)


# ------------------------------------------------------------------ datasets (faults 9, 11)


def test_a_flipped_bit_in_val_targets_is_refused(data):
    path = data / "val" / "targets.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # the last target moves to a neighbouring slot: still in range
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=f"{path}: contents do not match the checksum"):
        load_split(data, "val")


def test_a_flipped_bit_after_a_verified_load_is_still_found(data):
    load_split(data, "val")  # verified and remembered
    path = data / "val" / "tokens.npy"
    with open(path, "r+b") as fh:
        fh.seek(-5, 2)
        byte = fh.read(1)
        fh.seek(-5, 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(StoreError, match="checksum"):
        load_split(data, "val")


def _rewrite_with_checksum(data: Path, split: str, name: str, arr: np.ndarray) -> Path:
    """Replace an array and its manifest checksum, as a foreign or buggy builder might."""
    path = data / split / f"{name}.npy"
    np.save(path, arr)
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["splits"][split]["checksums"][name] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    (data / MANIFEST).write_text(json.dumps(manifest))
    return path


def test_out_of_range_token_values_are_refused_by_name(checkpoint, data, capsys):
    tokens = np.load(data / "val" / "tokens.npy")
    tokens[3, 5, 2] = 9  # feature 2 (is double) is 0 or 1: the embedding has no row 9
    path = _rewrite_with_checksum(data, "val", "tokens", tokens)
    with pytest.raises(StoreError, match=rf"{path}: value 9 at sample 3, token 5, feature 2 is outside 0\.\.1"):
        load_split(data, "val")
    _eval_one_line(capsys, checkpoint, data, str(path), "outside 0..1")


def test_out_of_range_targets_and_qvals_are_refused(data):
    targets = np.load(data / "val" / "targets.npy")
    targets[0] = 7
    _rewrite_with_checksum(data, "val", "targets", targets)
    with pytest.raises(StoreError, match="value 7 at sample 0 is outside 0..6"):
        load_split(data, "val")
    qvals = np.load(data / "train" / "qvals.npy")
    qvals[1, 2] = 100
    _rewrite_with_checksum(data, "train", "qvals", qvals)
    with pytest.raises(StoreError, match="value 100 at sample 1 is outside -42..42"):
        load_split(data, "train")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"[]", "a JSON list, not an object"),
        (b"not json", "unreadable manifest"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("drop-count", "split 'val' has no valid 'count'"),
        ("string-count", "split 'val' has no valid 'count' (got '120')"),
        ("no-checksums", "split 'val' lacks a sha256 checksum"),
        ("bad-split-name", "bad split name '../val'"),
    ],
)
def test_malformed_manifests_are_store_errors_naming_the_file(data, content, message):
    path = data / MANIFEST
    manifest = json.loads(path.read_text())
    if content == "drop-count":
        del manifest["splits"]["val"]["count"]
    elif content == "string-count":
        manifest["splits"]["val"]["count"] = "120"
    elif content == "no-checksums":
        del manifest["splits"]["val"]["checksums"]
    elif content == "bad-split-name":
        manifest["splits"]["../val"] = manifest["splits"].pop("val")
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=str(path)) as err:
        load_split(data, "train")
    assert message in str(err.value)


def test_a_malformed_manifest_is_one_line_from_eval(checkpoint, data, capsys):
    (data / MANIFEST).write_text("[]")
    _eval_one_line(capsys, checkpoint, data, str(data / MANIFEST), "malformed manifest")


# ------------------------------------------------------------------ tokenize --output (fault 15)


def test_tokenize_to_a_file_fails_before_any_work(shards, tmp_path, capsys):
    src = shards["train"][0].parent
    work = tmp_path / "work"
    work.mkdir()
    target = work / "ds.txt"
    target.write_text("keep me\n")
    rc = run_cli(tokenize_cli.main, ["--input", str(src), "--output", str(target), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(target) in err and "not a dataset folder" in err
    assert sorted(p.name for p in work.iterdir()) == ["ds.txt"]  # no sibling cache/ filled first
    assert target.read_text() == "keep me\n"


def test_build_dataset_refuses_a_file_in_place_of_a_folder_before_any_work(shards, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="blocker"):
        build_dataset({"train": shards["train"]}, blocker / "ds", 60, 0, cache_dir=tmp_path / "cache",
                      progress=False)
    assert not (tmp_path / "cache").exists()


def test_eval_out_to_a_folder_is_one_line(checkpoint, data, tmp_path, capsys):
    rc = run_cli(eval_cli.main, ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is a folder" in err


def test_a_state_without_a_legal_move_has_a_finite_game_value(checkpoint, data):
    """A terminal state has no move to take the best Q of (the tokenizer drops them; a dataset made
    some other way may hold one): its game value is the value head's, and one such row leaves every
    metric finite (it made game-value MAE infinite)."""
    from forge.ml.model import best_legal_q

    model = load_module(checkpoint).model.eval()
    tensors = {k: v.clone() for k, v in load_tensors(data, "val").items()}
    before = evaluate_model(model, tensors, with_q=True)
    tensors["legal"][0] = 0
    after = evaluate_model(model, tensors, with_q=True)
    assert all(np.isfinite(v) for v in after.values() if isinstance(v, float)), after
    assert after["game_value_mae"] == pytest.approx(before["game_value_mae"], abs=84 / len(tensors["targets"]))
    with torch.no_grad():
        out = model(tensors["tokens"][:2], tensors["masks"][:2], tensors["players"][:2])
    v = best_legal_q(out, tensors["legal"][:2])
    assert v[0] == out.value[0] and v[1] == out.q[1].masked_fill(tensors["legal"][1] == 0, -9).max()
