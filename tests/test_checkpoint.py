import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_bytes, read_safetensors
from dcgan_cli.core.networks import load_generator
from dcgan_cli.training.checkpoints import (
    latest_checkpoint,
    list_checkpoints,
    save_checkpoint,
)


class Payload:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_checkpoint_round_trip(tmp_path):
    tensors = {"G.w": torch.randn(3, 4), "optG.0.step": torch.tensor(7.0), "rng.cpu": torch.get_rng_state()}
    path = save_checkpoint(tmp_path, 7, tensors, {"step": 7, "note": "hello"})
    assert path.name == "step-0000007.safetensors"
    found_path, back, meta = latest_checkpoint(tmp_path)
    assert found_path == path and meta == {"step": 7, "note": "hello"}
    assert all(torch.equal(tensors[k], back[k]) for k in tensors)
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["checkpoint"] == "checkpoints/step-0000007.safetensors" and len(latest["sha256"]) == 64


def test_old_checkpoints_are_pruned_and_temporary_files_ignored(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"x": torch.zeros(1)}, {"step": step}, keep_last=2)
    (tmp_path / "checkpoints" / ".step-0000009.safetensors.tmp-1-2").write_bytes(b"partial")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 3]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, 1, {"x": torch.ones(100)}, {"step": 1})
    newest = save_checkpoint(tmp_path, 2, {"x": torch.ones(100) * 2}, {"step": 2})
    newest.write_bytes(newest.read_bytes()[:-50])  # truncated
    path, tensors, meta = latest_checkpoint(tmp_path)
    assert meta["step"] == 1 and tensors["x"][0] == 1


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    with pytest.raises(DcganError, match="No space left on device; the previous version of the file is untouched"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pickles_are_refused_and_never_executed(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(pickle.dumps({"w": Payload(marker)}))
    with pytest.raises(DcganError, match="Python pickle, not safetensors; dcgan-cli never loads pickles"):
        read_safetensors(path)
    torch.save({"w": Payload(marker)}, tmp_path / "zipped.safetensors")
    with pytest.raises(DcganError, match="zip archive"):
        read_safetensors(tmp_path / "zipped.safetensors")
    assert not marker.exists()


def test_truncated_and_empty_files_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DcganError, match="damaged or incomplete"):
        read_safetensors(path)
    path.write_bytes(b"")
    with pytest.raises(DcganError, match="truncated or empty"):
        read_safetensors(path)


def test_weights_that_do_not_fit_the_config_are_refused(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    config["model"]["ngf"] = 32
    (trained_run / "config.json").write_text(json.dumps(config))
    with pytest.raises(DcganError, match=r"does not match the model in config.json: blocks\.0\.conv\.weight has shape"):
        load_generator(trained_run)


def test_foreign_safetensors_are_refused(tmp_path):
    save_file({"encoder.weight": torch.randn(3, 3)}, tmp_path / "generator.safetensors")
    with pytest.raises(DcganError, match="carries no model arguments"):
        load_generator(tmp_path / "generator.safetensors")
