"""The concept bank (concepts.json), `dcgan concepts`, and labelers."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import dcgan_cli
from dcgan_cli import plugins
from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.latent.concepts import Concept, add_concepts, read_bank, remove_concepts
from dcgan_cli.latent.labelers.base import (
    ConceptRule,
    Labeler,
    LabelerContext,
    get_labelers,
    select_exemplars,
)
from dcgan_cli.latent.labelers.celeba import CelebALabeler, concept_name_for
from dcgan_cli.latent.labelers.strokes import stroke_slant, stroke_thickness


def error_line(result) -> str:
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------------- the bank file


def test_bank_round_trip_is_exact(tmp_path):
    path = tmp_path / "concepts.json"
    g = torch.Generator().manual_seed(0)
    a = Concept(
        "thick seven", torch.randn(3, 100, generator=g), {"kind": "labeler", "indices": [4, 9, 1]}, [0.9, 0.8, 0.7]
    )
    b = Concept(
        "one", torch.randn(10, 100, generator=g) * 1e-3, {"kind": "sheet", "sheet": "sheets/sheet-001.z.safetensors"}
    )
    add_concepts(path, [a, b], nz=100)
    bank = read_bank(path)
    assert list(bank) == ["thick seven", "one"]
    assert torch.equal(bank["thick seven"].z, a.z) and torch.equal(bank["one"].z, b.z)  # float32 read back bit for bit
    assert bank["thick seven"].source == a.source and bank["thick seven"].scores == [0.9, 0.8, 0.7]
    assert bank["one"].scores is None and bank["one"].created
    data = json.loads(path.read_text())
    assert data["format"] == "dcgan-cli/concepts" and data["format_version"] == 1

    with pytest.raises(DcganError, match="already has 'one'; pass --force"):
        add_concepts(path, [Concept("one", torch.zeros(1, 100))], nz=100)
    assert torch.equal(read_bank(path)["one"].z, b.z)  # refused: nothing changed
    add_concepts(path, [Concept("one", torch.ones(2, 100))], nz=100, force=True)
    assert read_bank(path)["one"].z.shape == (2, 100)
    with pytest.raises(DcganError, match="must be \\(K, 100\\) vectors"):
        add_concepts(path, [Concept("wide", torch.ones(2, 64))], nz=100)
    remove_concepts(path, ["thick seven"])
    assert list(read_bank(path)) == ["one"]
    with pytest.raises(DcganError, match="did you mean 'one'"):
        remove_concepts(path, ["ones"])


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else", "concepts": {}}', "is damaged"),
        (
            '{"format": "dcgan-cli/concepts", "format_version": 1, "concepts": {"a": {"z": [[1, 2], [3]]}}}',
            "is damaged",
        ),
        ('{"format": "dcgan-cli/concepts", "format_version": 1, "concepts": {"a": {"z": []}}}', "is damaged"),
        ('{"format": "dcgan-cli/concepts", "format_version": 9, "concepts": {}}', "newer dcgan-cli"),
    ],
)
def test_damaged_bank_is_one_clear_error(tmp_path, content, needle):
    path = tmp_path / "concepts.json"
    path.write_text(content)
    with pytest.raises(DcganError, match=needle):
        read_bank(path)
    with pytest.raises(DcganError):
        add_concepts(path, [Concept("x", torch.zeros(1, 2))], nz=2)
    assert path.read_text() == content  # an edit never overwrites what it could not read


WRITER = textwrap.dedent(
    """
    import sys, torch
    from dcgan_cli.latent.concepts import Concept, add_concepts
    path, worker = sys.argv[1], int(sys.argv[2])
    for i in range(8):
        z = torch.full((2, 8), float(worker * 100 + i))
        add_concepts(path, [Concept(f"w{worker} c{i}", z, {"kind": "test"})], nz=8)
    """
)


def test_concurrent_edits_from_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "concepts.json"
    add_concepts(path, [Concept("before", torch.zeros(1, 8))], nz=8)
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], stderr=subprocess.PIPE) for w in range(3)
    ]
    for w in workers:
        assert w.wait(timeout=120) == 0, w.stderr.read().decode()
    bank = read_bank(path)
    assert len(bank) == 1 + 3 * 8
    for w in range(3):
        for i in range(8):
            assert bank[f"w{w} c{i}"].z[0, 0].item() == w * 100 + i
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no temporary file left behind


# ---------------------------------------------------------------------------- `dcgan concepts`


def test_concepts_add_list_remove(cli, trained_run):
    assert "No concepts" in cli(["concepts", "list"]).stderr
    assert cli(["sample", "-n", "20", "--seed", "9"]).exit_code == 0
    assert cli(["sample", "-n", "20", "--seed", "3"]).exit_code == 0  # the newest sheet is the default
    result = cli(["concepts", "add", "Smiling  Seven", "--samples", "3,17,4-5"])
    assert result.exit_code == 0, result.output
    bank = read_bank(trained_run / "concepts.json")
    from dcgan_cli.core.prior import seeded_z

    assert torch.equal(bank["smiling seven"].z, seeded_z(3, 20, 100, "normal")[[3, 17, 4, 5]])
    assert bank["smiling seven"].source == {
        "kind": "sheet",
        "sheet": "sheets/sheet-002.z.safetensors",
        "indices": [3, 17, 4, 5],
        "seed": "3",
    }
    rows = json.loads(cli(["concepts", "list", "--json"]).stdout)
    assert [(r["name"], r["exemplars"]) for r in rows] == [("smiling seven", 4)]
    assert "smiling seven" in cli(["concepts", "list"]).stdout

    assert "pass --force" in error_line(cli(["concepts", "add", "smiling seven", "--samples", "1"]))
    assert "outside" in error_line(cli(["concepts", "add", "x", "--samples", "20"]))
    assert "sample indices such as" in error_line(cli(["concepts", "add", "x", "--samples", "3;4"]))
    assert "cannot be a concept name" in error_line(cli(["concepts", "add", "7 up", "--samples", "1"]))
    assert "no sheet 'sheet-009'" in error_line(cli(["concepts", "add", "x", "--samples", "1", "--sheet", "sheet-009"]))
    assert cli(["concepts", "add", "first", "--samples", "0", "--sheet", "1"]).exit_code == 0
    assert torch.equal(read_bank(trained_run / "concepts.json")["first"].z, seeded_z(9, 1, 100, "normal"))
    assert "did you mean 'smiling seven'" in error_line(cli(["concepts", "remove", "smiling sevn"]))
    assert cli(["concepts", "remove", "smiling seven", "first"]).exit_code == 0
    assert read_bank(trained_run / "concepts.json") == {}


def test_concepts_add_refuses_a_sheet_of_another_run(cli, trained_run, tmp_path):
    other = tmp_path / "runs" / "other"
    shutil.copytree(trained_run, other)
    config = json.loads((other / "config.json").read_text())
    config["run_id"] = "other"
    (other / "config.json").write_text(json.dumps(config))
    assert cli(["sample", "-r", other, "-n", "4"]).exit_code == 0
    line = error_line(
        cli(
            ["concepts", "add", "x", "--samples", "1", "-r", trained_run, "--sheet", other / "sheets" / "sheet-001.png"]
        )
    )
    assert "drawn from run 'other'" in line


# ---------------------------------------------------------------------------- labelers


def test_select_exemplars_follows_present_absent_and_typical():
    attributes = ["seven", "thick"]
    scores = np.array(
        [
            [0.99, 0.50],  # a plain seven
            [0.95, 0.98],  # a thick seven
            [0.60, 0.90],  # a less sure thick seven
            [0.20, 0.99],  # thick, not a seven
            [0.97, 0.05],  # a thin seven
            [0.90, 0.60],  # another plain one
        ]
    )
    rules = [
        ConceptRule("seven", present=("seven",), typical=("thick",)),
        ConceptRule("thick seven", present=("seven", "thick")),
        ConceptRule("thin seven", present=("seven",), absent=("thick",)),
        ConceptRule("unseen", present=("seven", "thick"), absent=("seven",)),
    ]
    plain, thick, thin, unseen = select_exemplars(scores, attributes, rules, keep=2)
    assert plain.indices == [0, 5] and plain.qualifying == 2
    assert thick.indices == [1, 2] and thick.qualifying == 4  # row 5 fits too, ranked lower
    assert np.allclose(thick.scores, [0.95 * 0.98, 0.60 * 0.90])
    assert thin.indices == [4]
    assert unseen.indices == [] and unseen.qualifying == 0
    with pytest.raises(ValueError, match="unknown attribute"):
        select_exemplars(scores, attributes, [ConceptRule("x", present=("eight",))], keep=1)


def test_stroke_measurements_on_drawn_strokes():
    def bar(width, shear=0.0):
        image = -torch.ones(1, 32, 32)
        for row in range(4, 28):
            centre = 16 + shear * (16 - row)
            left = round(centre - width / 2)
            image[0, row, left : left + width] = 1
        return image

    images = torch.stack([bar(2), bar(4), bar(6), bar(4, shear=0.4), bar(4, shear=-0.4)])
    thickness = stroke_thickness(images)
    assert thickness[0] < thickness[1] < thickness[2]
    assert abs(float(thickness[1]) - 4 * 24 / (24 + 4)) < 0.3  # 2 * area / perimeter of a 4 x 24 bar
    slant = stroke_slant(images)
    assert (
        abs(float(slant[1])) < 1 and 15 < float(slant[3]) < 30 and -30 < float(slant[4]) < -15
    )  # atan(0.4) = 21.8 degrees
    # The same measurement at 64 pixels: strokes are measured on a 32-pixel scale.
    big = torch.nn.functional.interpolate(images, scale_factor=2, mode="nearest")
    assert torch.allclose(stroke_thickness(big), thickness, rtol=0.05)


def test_celeba_concept_names():
    assert concept_name_for("Wearing_Hat") == "wearing hat"
    assert concept_name_for("5_o_Clock_Shadow") == "5_o_clock_shadow"  # "5 o clock" would read as 5 * "o clock"
    from dcgan_cli.latent.expressions import parse_expression

    assert parse_expression("5_o_clock_shadow - wearing hat").terms == {"5_o_clock_shadow": 1.0, "wearing hat": -1.0}


class StandInCelebA(torch.utils.data.Dataset):
    """In memory, the interface of the celeba dataset: (image, attrs) items and .attr_names.

    The attributes are drawn into the images: Male darkens the left half, Smiling puts a
    bright bar low in the face, Eyeglasses a dark bar across the eyes; Young is noise.
    """

    attr_names = ["Eyeglasses", "Male", "Smiling", "Young"]

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.attrs = (torch.rand(n, 4, generator=g) < 0.5).float()
        images = torch.rand(n, 3, 32, 32, generator=g) * 0.6 - 0.3
        images[self.attrs[:, 1] == 1, :, :, :16] -= 0.5
        images[self.attrs[:, 2] == 1, :, 22:26, 8:24] = 0.9
        images[self.attrs[:, 0] == 1, :, 10:13, 4:28] = -0.9
        self.images = images.clamp(-1, 1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.attrs[i]


def test_celeba_labeler_learns_the_attributes_and_builds_the_paper_concepts(tmp_path):
    model = DCGANConfig(size=32, channels=3)
    context = LabelerContext(tmp_path, model, "celeba", data=tmp_path / "celeba", device="cpu", options={"steps": 60})
    labeler = CelebALabeler(context, dataset=StandInCelebA(1000, seed=0))
    labeler.prepare()
    accuracy = labeler.held_out_accuracy
    assert min(accuracy["Eyeglasses"], accuracy["Male"], accuracy["Smiling"]) > 0.95, accuracy
    assert accuracy["Young"] < 0.75  # noise cannot be learned: the accuracy is measured on held-out images

    # Applied to new images (standing in for generated ones), the scores pick the right exemplars.
    fresh = StandInCelebA(300, seed=1)
    scores = labeler.score(fresh.images)
    assert scores.shape == (300, 4) and ((scores >= 0) & (scores <= 1)).all()
    rules = {r.name: r for r in labeler.concepts()}
    assert {
        "eyeglasses",
        "male",
        "smiling",
        "young",
        "smiling woman",
        "neutral man",
        "man with glasses",
        "woman without glasses",
    } <= set(rules)
    (smiling_woman,) = select_exemplars(scores, labeler.attributes(), [rules["smiling woman"]], keep=10)
    chosen = fresh.attrs[smiling_woman.indices]
    assert len(chosen) == 10 and (chosen[:, 2] == 1).all() and (chosen[:, 1] == 0).all()

    # The classifier is cached in the run folder and reloaded (no pickle: safetensors + JSON).
    assert context.run_dir.joinpath("labelers", "celeba.safetensors").is_file()
    again = CelebALabeler(context, dataset=None)
    again.prepare()  # loads the cache; no dataset needed
    assert np.allclose(again.score(fresh.images), scores, atol=1e-5)
    assert again.held_out_accuracy == accuracy


def test_celeba_labeler_without_the_dataset_says_so(tmp_path):
    context = LabelerContext(tmp_path, DCGANConfig(size=32, channels=3), "celeba", data=None, device="cpu")
    with pytest.raises(DcganError):
        CelebALabeler(context).prepare()


class BrightnessLabeler(Labeler):
    """A third-party labeler: how much ink an image has."""

    NAME = "brightness"
    DATASETS = ()

    def attributes(self):
        return ["bright"]

    def score(self, images):
        ink = images.float().add(1).div(2).mean(dim=(1, 2, 3)).numpy()
        return (np.argsort(np.argsort(ink)) / max(len(ink) - 1, 1))[:, None]  # rank within the batch

    def concepts(self):
        return [ConceptRule("bright", present=("bright",)), ConceptRule("dark", absent=("bright",))]


def test_a_plugin_labeler_builds_concepts_through_the_cli(cli, trained_run):
    class Plugin:
        @dcgan_cli.hookimpl
        def dcgan_register_labelers(self, register):
            register("brightness", BrightnessLabeler)

    pm = plugins.get_plugin_manager()
    pm.register(Plugin(), name="brightness-plugin")
    try:
        assert get_labelers()["brightness"] is BrightnessLabeler
        result = cli(["concepts", "auto", "--labeler", "brightness", "-n", "256", "--keep", "4", "--seed", "1"])
        assert result.exit_code == 0, result.output
        bank = read_bank(trained_run / "concepts.json")
        assert set(bank) == {"bright", "dark"} and len(bank["bright"].z) == 4
        assert bank["bright"].source["labeler"] == "brightness" and bank["bright"].source["seed"] == 1
        from dcgan_cli.engines.torch_engine import TorchEngine

        with TorchEngine(trained_run, device="cpu") as engine:
            bright = engine.generate(bank["bright"].z).mean()
            dark = engine.generate(bank["dark"].z).mean()
        assert bright > dark
        assert "pass --force" in error_line(cli(["concepts", "auto", "--labeler", "brightness", "-n", "64"]))
        assert cli(["concepts", "auto", "--labeler", "brightness", "-n", "64", "--force"]).exit_code == 0
    finally:
        pm.unregister(name="brightness-plugin")
    assert "unknown labeler 'brightness'" in error_line(cli(["concepts", "auto", "--labeler", "brightness"]))


def test_auto_on_a_dataset_no_labeler_knows(cli, trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    config["train"]["dataset"] = "fake"
    (trained_run / "config.json").write_text(json.dumps(config))
    line = error_line(cli(["concepts", "auto"]))
    assert "no labeler knows the dataset 'fake'" in line and "--labeler" in line
