"""Bad input: one clear line naming the problem and the fix, exit code 3 (ExitCode.BAD_INPUT), no traceback."""

import json

import pytest

from dcgan_cli.core.errors import ExitCode


def assert_clean_error(result, *needles, code=ExitCode.BAD_INPUT):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_missing_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_clean_error(cli(["sample"]), "no run found under ./runs", "dcgan train")
    assert_clean_error(cli(["sample", "-r", "nowhere"]), "run folder nowhere does not exist")
    (tmp_path / "empty").mkdir()
    assert_clean_error(cli(["sample", "-r", "empty"]), "empty is not a run folder", "config.json")


def test_existing_output_is_not_overwritten(cli, trained_run):
    with open("grid.png", "wb") as f:
        f.write(b"precious")
    assert_clean_error(cli(["sample", "--out", "grid.png"]), "grid.png already exists", "--force")
    with open("grid.png", "rb") as f:
        assert f.read() == b"precious"
    assert cli(["sample", "-n", "4", "--out", "grid.png", "--force"]).exit_code == 0


def test_truncated_generator(cli, trained_run):
    path = trained_run / "generator.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    assert_clean_error(cli(["sample", "-n", "2"]), "generator.safetensors is damaged or incomplete")


def test_pickle_in_place_of_weights(cli, trained_run):
    import pickle

    (trained_run / "generator.safetensors").write_bytes(pickle.dumps({"a": 1}))
    assert_clean_error(cli(["sample", "-n", "2"]), "pickle", "never loads pickles")


def test_config_that_does_not_match_the_weights(cli, trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    config["model"]["nz"] = 64
    (trained_run / "config.json").write_text(json.dumps(config))
    assert_clean_error(cli(["sample", "-n", "2"]), "does not match the model in config.json")


@pytest.mark.parametrize("bad,needle", [({"nz": 10**9}, "nz must be between"), ({"size": "64"}, "size must be int")])
def test_absurd_or_mistyped_config(cli, trained_run, bad, needle):
    config = json.loads((trained_run / "config.json").read_text())
    config["model"].update(bad)
    (trained_run / "config.json").write_text(json.dumps(config))
    assert_clean_error(cli(["sample", "-n", "2"]), needle)


def test_config_that_is_not_json(cli, trained_run):
    (trained_run / "config.json").write_text("{not json")
    assert_clean_error(cli(["sample"]), "is not valid JSON")


def test_foreign_checkpoint_on_resume(cli, trained_run):
    import torch
    from safetensors.torch import save_file

    ckpt = sorted((trained_run / "checkpoints").iterdir())[-1]
    save_file({"encoder.weight": torch.randn(2, 2)}, ckpt, metadata={"format": "something-else"})
    for other in (trained_run / "checkpoints").iterdir():
        if other != ckpt:
            other.unlink()
    assert_clean_error(cli(["train", "--resume", str(trained_run)]), "not a dcgan-cli training checkpoint")


def test_train_refuses_to_reuse_a_run_folder_and_unknown_datasets(cli, trained_run):
    assert_clean_error(cli(["train", "--out", str(trained_run)]), "already exists", "--resume", "--force")
    assert (trained_run / "generator.safetensors").exists()
    assert_clean_error(cli(["train", "imagenet"]), "unknown dataset 'imagenet'", "digits")
    assert_clean_error(cli(["train", "--size", "48"]), "size must be one of 32, 64, 128")
    assert_clean_error(
        cli(
            ["train", "--device", "cuda:0"]
            if not __import__("torch").cuda.is_available()
            else ["train", "--device", "tpu"]
        ),
        "device",
    )


def test_sample_argument_errors(cli, trained_run):
    assert_clean_error(cli(["sample", "-n", "0"]), "-n must be at least 1")
    assert_clean_error(cli(["sample", "--out", "x.gif"]), "use a .png")
    assert_clean_error(cli(["sample", "--engine", "warp"]), "unknown engine 'warp'", "torch")
    assert_clean_error(cli(["sample", "-n", "5000", "--out", "big.png"]), "too many for one grid")
