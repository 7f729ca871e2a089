"""`dcgan forget`: boxes.json, detectors, the baked generator and the new run.

Uses tests/fixtures/scenes-run, a DCGAN trained on `scenes` that draws windows (made with
`python benchmarks/forget_windows.py --save-run tests/fixtures/scenes-run`), and the
digits fixture run.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan_cli import hookimpl, plugins
from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.networks import load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.core.runs import read_run_config
from dcgan_cli.engines.sampling import read_sheet
from dcgan_cli.latent.detectors import boxes_area
from dcgan_cli.latent.forget import drop_maps
from dcgan_cli.latent.forget_boxes import generate
from dcgan_cli.latent.window_detector import WindowDetector

FIXTURES = Path(__file__).parent / "fixtures"


def assert_clean_error(result, *needles):
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture
def scenes_run(tmp_path, monkeypatch) -> Path:
    """A private copy of the trained scenes run at ./runs/scenes, cwd in a temp folder."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "scenes-run", tmp_path / "runs" / "scenes")
    return Path("runs") / "scenes"


@pytest.fixture(scope="module")
def forgot(tmp_path_factory):
    """One `dcgan forget --boxes` run on a sheet of the scenes run, shared by the tests below:
    (folder holding both runs, the source run, the new run, the command's result)."""
    from typer.testing import CliRunner

    from dcgan_cli.cli import build_app

    base = tmp_path_factory.mktemp("forget")
    source = base / "scenes"
    shutil.copytree(FIXTURES / "scenes-run", source)
    invoke = CliRunner().invoke
    assert invoke(build_app(), ["sample", "-r", str(source), "-n", "64", "--seed", "3"]).exit_code == 0
    sheet = source / "sheets" / "sheet-001.z.safetensors"
    z, _ = read_sheet(sheet)
    # Boxes a person would draw: the windows on each sample of the sheet.
    found = WindowDetector().detect(generate(load_generator(source), z))
    doc = {
        "sheet": "sheets/sheet-001.z.safetensors",
        "size": 32,
        "samples": [{"index": i, "boxes": b} for i, b in enumerate(found)],
    }
    (base / "boxes.json").write_text(json.dumps(doc))
    new = base / "forgot"
    result = invoke(build_app(), ["forget", "-r", str(source), "--boxes", str(base / "boxes.json"), "--out", str(new)])
    assert result.exit_code == 0, result.output
    return base, source, new, result


def test_forget_writes_a_full_run_with_a_figure(forgot):
    base, source, new, result = forgot
    config = read_run_config(new)
    record = config["forget"]
    dropped = record["dropped_maps"]
    assert 0 < len(dropped) < record["maps"] == 32 and record["layer"] == 2
    assert f"Dropped {len(dropped)} of 32 feature maps of block 2" in result.stdout
    assert config["run_id"] == "forgot" and config["model"] == read_run_config(source)["model"]
    assert (new / "discriminator.safetensors").read_bytes() == (source / "discriminator.safetensors").read_bytes()
    figure = json.loads((new / "figures" / "forget-001.json").read_text())
    assert figure["dropped_maps"] == dropped and figure["result"]["boxes"] > 0
    assert (new / "figures" / "forget-001.png").stat().st_size > 1000
    # The boxes it used come back as a boxes.json that names the source sheet.
    used = json.loads((new / "figures" / "forget-001.boxes.json").read_text())
    assert used["sheet"] == "sheets/sheet-001.z.safetensors" and len(used["samples"]) == 64
    assert used["samples"][:3] == json.loads((base / "boxes.json").read_text())["samples"][:3]


def test_baked_generator_equals_masking_the_maps_at_run_time(forgot):
    _, source, new, _ = forgot
    dropped = read_run_config(new)["forget"]["dropped_maps"]
    original, baked = load_generator(source), load_generator(new)
    mask = torch.ones(1, original.config.ngf, 1, 1)
    mask[:, dropped] = 0
    hook = original.blocks[2].register_forward_hook(lambda module, inputs, output: output * mask)
    z = seeded_z(99, 32, 100, "normal")
    with torch.no_grad():
        masked, unmasked = original(z), None
        hook.remove()
        unmasked, ours = original(z), baked(z)
    assert torch.allclose(ours, masked, atol=1e-6, rtol=0)
    assert (ours - unmasked).abs().max() > 0.1  # the drop changes the pictures
    changed = [k for k, v in baked.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert changed == ["to_image.conv.weight"]  # only the next layer's input weights


@pytest.mark.parametrize("layer,maps", [(0, [0, 5, 77]), (1, [3, 40])])
def test_dropping_maps_of_a_lower_block_equals_masking_them(layer, maps):
    netG = load_generator(FIXTURES / "scenes-run")
    baked = drop_maps(netG, layer, maps)
    mask = torch.ones(1, netG.blocks[layer].conv.out_channels, 1, 1)
    mask[:, maps] = 0
    netG.blocks[layer].register_forward_hook(lambda module, inputs, output: output * mask)
    z = seeded_z(1, 16, 100, "normal")
    with torch.no_grad():
        assert torch.allclose(baked(z), netG(z), atol=1e-6, rtol=0)
    assert torch.count_nonzero(baked.blocks[layer + 1].conv.weight[maps]) == 0


def test_forgetting_shrinks_the_windows_the_detector_sees(forgot):
    _, source, new, _ = forgot
    z = seeded_z(7, 200, 100, "normal")  # samples the boxes were not drawn on
    detector = WindowDetector()
    before = boxes_area(detector.detect(generate(load_generator(source), z)), 32, 32)
    after = boxes_area(detector.detect(generate(load_generator(new), z)), 32, 32)
    print(f"detected window area on 200 held-out samples: {before} -> {after} px")
    assert before > 200 * 8 and after < 0.5 * before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript-based exporter, asked for on purpose
def test_new_run_samples_and_exports_to_onnx(forgot, cli, monkeypatch):
    import onnxruntime as ort

    base, _, new, _ = forgot
    monkeypatch.chdir(base)
    result = cli(["sample", "-r", "forgot", "-n", "4", "--out", "grid.png"])
    assert result.exit_code == 0, result.output
    # The baked generator exports like any run's, and ONNX Runtime draws what PyTorch draws.
    result = cli(["export", "-r", "forgot"])
    assert result.exit_code == 0, result.output
    record = json.loads((new / "exports" / "export.json").read_text())
    (entry,) = record["models"]
    assert entry["parity"]["passed"] and entry["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(new / "exports" / "generator.onnx"), providers=["CPUExecutionProvider"])
    z = seeded_z(5, 8, 100, "normal")
    (images,) = session.run(None, {"z": z.numpy()})
    with torch.no_grad():
        expected = load_generator(new)(z).numpy()
    assert images.shape == (8, 3, 32, 32)
    assert np.abs(images - expected).max() < 1e-4


def test_detector_windows_end_to_end(cli, scenes_run):
    result = cli(
        [
            "forget",
            "--detector",
            "windows",
            "-n",
            "60",
            "--seed",
            "4",
            "--max-maps",
            "3",
            "--out",
            "runs/no-windows",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Annotating 60 samples of seed 4" in result.stderr
    used = json.loads(Path("runs/no-windows/figures/forget-001.boxes.json").read_text())
    assert used["seed"] == 4 and used["detector"] == "windows" and sum(len(s["boxes"]) for s in used["samples"]) > 20
    figure = json.loads(Path("runs/no-windows/figures/forget-001.json").read_text())
    weights = figure["result"]["weights"]
    assert figure["dropped_maps"] == sorted(range(32), key=lambda i: -weights[i])[:3]  # the 3 largest weights
    assert "Dropped 3 of 32" in result.stdout
    # A second forget on the new run numbers nothing over: it writes a third run, figure 001 again.
    again = cli(
        [
            "forget",
            "-r",
            "runs/no-windows",
            "--boxes",
            "runs/no-windows/figures/forget-001.boxes.json",
            "--out",
            "runs/again",
            "--threshold",
            "-100",
        ]
    )
    assert again.exit_code == 0, again.output
    assert "Dropped 32 of 32" in again.stdout


def _write_boxes(doc, name="boxes.json"):
    Path(name).write_text(json.dumps(doc))
    return name


@pytest.mark.parametrize(
    "doc,needles",
    [
        (
            {"seed": 0, "samples": [{"index": 0, "boxes": [[4, 4, 40, 10]]}]},
            ["sample 0, box 0", "outside the 32x32 image"],
        ),
        ({"seed": 0, "samples": [{"index": 0, "boxes": [[9, 4, 5, 10]]}]}, ["outside the 32x32 image or empty"]),
        ({"seed": 0, "samples": [{"index": 0, "boxes": [[1, 2, 3]]}]}, ["four numbers"]),
        (
            {"sheet": "sheets/sheet-001.png", "samples": [{"index": 4, "boxes": [[1, 1, 5, 5]]}]},
            ["there is no sample 4", "holds samples 0..3"],
        ),
        ({"seed": 0, "samples": [{"index": 0, "boxes": []}, {"index": 1}]}, ["holds no boxes", "no positive example"]),
        (
            {"seed": 0, "samples": [{"index": 1, "boxes": [[1, 1, 5, 5]]}, {"index": 1, "boxes": []}]},
            ["sample 1 is listed twice"],
        ),
        ({"sheet": "sheets/nowhere.z.safetensors", "samples": []}, ["sheet 'sheets/nowhere.z.safetensors' not found"]),
        ({"samples": [{"index": 0, "boxes": [[1, 1, 5, 5]]}]}, ['either "sheet"', '"seed"']),
        (
            {"seed": 0, "size": 64, "samples": [{"index": 0, "boxes": [[1, 1, 5, 5]]}]},
            ["drawn on 64x64 images", "32x32"],
        ),
    ],
)
def test_bad_boxes_are_refused(cli, scenes_run, doc, needles):
    assert cli(["sample", "-n", "4"]).exit_code == 0  # sheets/sheet-001 holds samples 0..3
    assert_clean_error(cli(["forget", "--boxes", _write_boxes(doc), "--out", "runs/new"]), *needles)
    assert not Path("runs/new").exists()


def test_bad_invocations_are_refused_and_nothing_is_lost(cli, scenes_run):
    boxes = _write_boxes({"seed": 0, "samples": [{"index": 0, "boxes": [[2, 2, 12, 12]]}]})
    assert_clean_error(cli(["forget", "--out", "runs/new"]), "either --boxes", "or --detector")
    assert_clean_error(
        cli(["forget", "--boxes", boxes, "--detector", "windows", "--out", "runs/new"]), "either --boxes"
    )
    assert_clean_error(
        cli(["forget", "--detector", "doors", "--out", "runs/new"]), "unknown detector 'doors'", "windows"
    )
    assert_clean_error(
        cli(["forget", "--boxes", boxes, "--out", "runs/scenes"]), "would overwrite the run it starts from"
    )
    assert_clean_error(
        cli(["forget", "--boxes", boxes, "--out", "runs", "--force"]), "would overwrite the run it starts from"
    )
    assert_clean_error(
        cli(["forget", "--boxes", boxes, "--layer", "3", "--out", "runs/new"]), "--layer 3", "blocks 0..2"
    )
    Path("runs/taken").mkdir()
    Path("runs/taken/notes.txt").write_text("precious")
    assert_clean_error(cli(["forget", "--boxes", boxes, "--out", "runs/taken"]), "runs/taken already exists", "--force")
    assert Path("runs/taken/notes.txt").read_text() == "precious"
    assert cli(["forget", "--boxes", boxes, "--out", "runs/taken", "--force"]).exit_code == 0
    assert not Path("runs/taken/notes.txt").exists() and Path("runs/taken/generator.safetensors").is_file()


def test_sheet_of_another_generator_is_refused(cli, scenes_run, tmp_path):
    shutil.copytree(FIXTURES / "digits-run", "runs/digits")
    assert cli(["sample", "-r", "runs/digits", "-n", "4", "--out", "digits.png", "--save-z"]).exit_code == 0
    boxes = _write_boxes({"sheet": str(tmp_path / "digits.png"), "samples": [{"index": 0, "boxes": [[2, 2, 12, 12]]}]})
    assert_clean_error(
        cli(["forget", "-r", "runs/scenes", "--boxes", boxes, "--out", "runs/new"]), "drawn by another generator"
    )


class StrokesPlugin:
    """A third-party plugin adding a detector: the bright strokes of a digit, as one box."""

    @hookimpl
    def dcgan_register_detectors(self, register):
        def strokes(images):
            """bright strokes on a dark ground"""
            out = []
            for image in images:
                rows, cols = np.nonzero(image[0].numpy() > 0.2)
                out.append([(cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)] if len(rows) else [])
            return out

        register("strokes", strokes)
        register("broken", lambda images: [[(0, 0, 99, 99)] for _ in images])


@pytest.fixture
def strokes_plugin():
    pm = plugins.get_plugin_manager()
    pm.register(StrokesPlugin(), name="strokes-plugin")
    yield
    pm.unregister(name="strokes-plugin")


def test_third_party_detector(cli, strokes_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "digits-run", "runs/digits")
    result = cli(["forget", "--detector", "strokes", "-n", "40", "--out", "runs/digits-forgot"])
    assert result.exit_code == 0, result.output
    assert (
        json.loads(Path("runs/digits-forgot/figures/forget-001.json").read_text())["annotations"]["detector"]
        == "strokes"
    )
    assert_clean_error(
        cli(["forget", "-r", "runs/digits", "--detector", "broken", "--out", "runs/x"]),
        "detector 'broken' returned the box",
    )


def test_resuming_training_of_a_forget_run_is_refused_and_keeps_its_generator(forgot, cli):
    base, source, new, result = forgot
    before = (new / "generator.safetensors").read_bytes()
    refused = cli(["train", "--resume", str(new), "--max-steps", "2"])
    assert refused.exit_code == ExitCode.BAD_INPUT, refused.output
    assert "has a generator but no training checkpoint" in refused.stderr and "Traceback" not in refused.output
    assert (new / "generator.safetensors").read_bytes() == before and not (new / "checkpoints").exists()
