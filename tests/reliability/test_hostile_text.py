"""Hostile text: property tests over every parser of user text.

The property, for each parser: on any input it returns a valid value or raises DcganError
(or a subclass) with a non-empty one-line message; never another exception. The arithmetic
expression parser has its own property tests in tests/test_arithmetic.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dcgan_cli.core.errors import DcganError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "digits-run"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def refused_cleanly(call, *args, **kwargs):
    """call(*args) -> (value, None), or (None, the DcganError) when it refused; anything else fails."""
    try:
        return call(*args, **kwargs), None
    except DcganError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        return None, exc


# Text that reaches the parsers' inner paths more often than arbitrary unicode does.
def near(alphabet: str, max_size: int = 30):
    return st.text(alphabet=alphabet, max_size=max_size) | st.text(max_size=max_size)


# ---------------------------------------------------------------------------- a run to parse against


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The committed digits run with a sheet of 8 samples and a bank of two concepts."""
    from dcgan_cli.core.prior import seeded_z
    from dcgan_cli.engines.sampling import sheet_metadata, write_sheet
    from dcgan_cli.latent.concepts import Concept, add_concepts, bank_path

    root = tmp_path_factory.mktemp("text") / "digits-run"
    shutil.copytree(FIXTURE, root)
    write_sheet(
        root / "sheets" / "sheet-001.z.safetensors",
        seeded_z(0, 8, 100, "normal"),
        sheet_metadata(root, 0, 8, "sheet-001.png", "torch"),
    )
    concepts = [
        Concept(name, seeded_z(i, 3, 100, "normal"), {"kind": "test"}) for i, name in enumerate(["one", "thick seven"])
    ]
    add_concepts(bank_path(root), concepts, nz=100)
    return root


# ---------------------------------------------------------------------------- --samples of `dcgan concepts add`


@SETTINGS
@given(near("0123456789,- \t٣"))
@example("9" * 5000)
@example("1-" + "9" * 5000)
@example("3-1")
@example("0-10000")
@example("0-10001")
@example(",,")
def test_samples_list(text):
    from dcgan_cli.latent.concepts import parse_indices

    indices, _ = refused_cleanly(parse_indices, text)
    if indices is not None:
        assert indices and all(type(i) is int and i >= 0 for i in indices)


# ---------------------------------------------------------------------------- boxes files

NUMBERS = st.integers(-5, 40) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=3) | st.booleans()
BOX = st.lists(NUMBERS, min_size=3, max_size=5) | NUMBERS
SAMPLE = st.dictionaries(
    st.sampled_from(["index", "boxes", "note"]), st.integers(-2, 12) | st.lists(BOX, max_size=3) | NUMBERS
)
BOXES_DOC = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["dcgan-cli/boxes", "coco"]) | st.text(max_size=5),
        "seed": st.integers(-3, 2**70) | NUMBERS,
        "sheet": st.sampled_from(
            [
                "sheets/sheet-001.z.safetensors",
                "sheets/sheet-001.png",
                "generator.safetensors",
                "config.json",
                "s" * 300,
                "nope",
            ]
        )
        | st.text(max_size=20)
        | NUMBERS,
        "size": st.sampled_from([32, 64]) | NUMBERS,
        "samples": st.lists(SAMPLE, max_size=5) | NUMBERS,
    },
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def check_boxes(run: Path, text: str):
    from dcgan_cli.latent.forget_boxes import read_boxes

    path = run / "boxes-under-test.json"
    path.write_text(text, encoding="utf-8")
    annotations, _ = refused_cleanly(read_boxes, path, run, 32, 100, "normal")
    if annotations is not None:
        assert annotations.z.shape == (len(annotations.indices), 100) and bool(torch.isfinite(annotations.z).all())
        assert len(set(annotations.indices)) == len(annotations.indices) and annotations.n_boxes > 0
        for boxes in annotations.boxes:
            for x0, y0, x1, y1 in boxes:
                assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32


@SETTINGS
@given(BOXES_DOC)
@example({"seed": 0, "samples": [{"index": 2**70, "boxes": [[1, 1, 5, 5]]}]})
@example({"sheet": "sheets/sheet-001.z.safetensors", "samples": [{"index": 7, "boxes": [[0, 0, 32, 32]]}]})
@example({"sheet": "sheet\x00", "samples": []})
def test_boxes_structures(run, doc):
    check_boxes(run, json.dumps(doc))


@SETTINGS
@given(JSON)
def test_boxes_of_any_json(run, doc):
    check_boxes(run, json.dumps(doc))


@SETTINGS
@given(near('{}[]":,0123456789.-eE samplesindexboxeseedsheet', 60))
@example("[" * 50_000)
@example('{"seed": 0, "samples": [{"index": ' + "9" * 5000 + "}]}")
def test_boxes_text(run, text):
    check_boxes(run, text)


# ---------------------------------------------------------------------------- files parsed into configs and banks


@SETTINGS
@given(
    st.fixed_dictionaries(
        {}, optional={k: JSON | st.integers() for k in ("size", "channels", "nz", "ngf", "ndf", "prior")}
    )
    | JSON
)
@example({"nz": 10**9})
@example({"size": 4096, "ngf": 10**7})
def test_model_config_of_any_json(data):
    from dcgan_cli.core.model import DCGANConfig

    config, _ = refused_cleanly(DCGANConfig.from_dict, data)
    if config is not None:
        assert config.validate() is config


@SETTINGS
@given(
    st.fixed_dictionaries(
        {"format": st.just("dcgan-cli/concepts")},
        optional={
            "format_version": st.integers(-1, 3) | JSON,
            "concepts": st.dictionaries(
                st.sampled_from(["one", "thick seven", "One", "1", ""]) | st.text(max_size=6),
                st.fixed_dictionaries(
                    {"z": st.lists(st.lists(NUMBERS, max_size=3), max_size=3) | JSON},
                    optional={"scores": JSON, "source": JSON},
                )
                | JSON,
                max_size=3,
            ),
        },
    )
)
def test_concept_bank_of_any_json(tmp_path_factory, doc):
    from dcgan_cli.latent.concepts import describe_source, read_bank

    path = tmp_path_factory.getbasetemp() / "bank-under-test.json"
    path.write_text(json.dumps(doc))
    bank, _ = refused_cleanly(read_bank, path)
    if bank is not None:
        for concept in bank.values():
            assert concept.z.ndim == 2 and len(concept.z) > 0 and bool(torch.isfinite(concept.z).all())
            assert isinstance(describe_source(concept), str)  # what `dcgan concepts list` prints


# ---------------------------------------------------------------------------- options parsed by hand


@SETTINGS
@given(near("0123456789.:-+eEinfa "))
@example("1:2:3:4")
@example("nan:1:5")
@example("0:1:65")
@example("-1e308:1e308:2")
def test_sweep(text):
    from dcgan_cli.latent.arithmetic import parse_sweep

    span, _ = refused_cleanly(parse_sweep, text)
    if span is not None:
        start, stop, count = span
        assert math.isfinite(start) and math.isfinite(stop) and 2 <= count <= 64


@SETTINGS
@given(near("0123456789, onethicksevn", 40))
@example("3,17")
@example("0,one,thick seven")
@example("one")
@example("8,9")
@example("one,Thick   Seven")
@example("٣,4")
def test_walk_through(run, spec):
    from dcgan_cli.latent.concepts import points_from_specs

    result, _ = refused_cleanly(points_from_specs, run, [spec], None, 3, 100, "normal")
    if result is not None:
        stops, described = result
        assert stops.shape[0] == 1 and stops.shape[1] >= 2 and stops.shape[2] == 100
        assert bool(torch.isfinite(stops).all()) and len(described[0]) == stops.shape[1]


@SETTINGS
@given(near("0123456789sheet-.zafnpg/", 40))
@example("1")
@example("sheet-001")
@example("sheets/sheet-001.png")
@example("0" * 5000)
def test_sheet_option(run, text):
    from dcgan_cli.latent.concepts import resolve_sheet

    path, _ = refused_cleanly(resolve_sheet, run, text)
    if path is not None:
        assert path.is_file()


@SETTINGS
@given(near("0123456789, -"))
@example("9" * 5000)
@example("0,16")
def test_bench_batch_sizes(text):
    from dcgan_cli.commands.bench import _int_list

    sizes, _ = refused_cleanly(_int_list, text, "--batch-sizes")
    if sizes is not None:
        assert sizes and all(type(s) is int and s >= 1 for s in sizes)


@SETTINGS
@given(near("0123456789:٤"), st.none() | near("abcnode0123456789.:[]"))
@example("1:4", "node1:29400")
@example("2", "[::1]:29400")
@example("1:٤", "node1:29400")
@example("2", "node1:99999")
@example("4:2", None)
def test_nnodes_and_rendezvous(nnodes, endpoint):
    from dcgan_cli.training.distributed import LaunchOptions

    options, _ = refused_cleanly(LaunchOptions(2, nnodes, endpoint).validate)
    if options is not None:
        parts = [int(p) for p in nnodes.split(":")]
        assert nnodes.isascii() and 1 <= len(parts) <= 2 and 1 <= parts[0] <= parts[-1]
        if max(parts) > 1:
            assert endpoint and endpoint.isascii() and not any(c.isspace() for c in endpoint)


@SETTINGS
@given(near("0123456789,al -"))
@example("all")
@example("0")
@example("4")
@example("9" * 5000)
def test_discriminator_layers(text):
    pytest.importorskip("dcgan_analysis")
    from dcgan_analysis.commands import _parse_layers
    from dcgan_analysis.features import check_layers
    from dcgan_cli.core.model import DCGANConfig

    config = DCGANConfig(size=32, channels=1, ngf=8, ndf=8)
    layers, _ = refused_cleanly(lambda: check_layers(config, _parse_layers(text)))
    if layers is not None:
        assert all(0 <= i < config.n_layers for i in layers)


@SETTINGS
@given(near("cpudaut:0123456789"))
@example("cuda:99999999999999999999")
@example("cpu:0")
@example("meta")
def test_device(text):
    from dcgan_cli.core.devices import resolve_device

    device, _ = refused_cleanly(resolve_device, text)
    if device is not None:
        assert device.type == "cpu" or torch.cuda.is_available()


@SETTINGS
@given(near("abc _'1 \t"))
@example("1 + 2")
@example("  Thick   Seven ")
@example("7")
def test_concept_name(text):
    from dcgan_cli.latent.concepts import check_name
    from dcgan_cli.latent.expressions import is_valid_name, normalize_name

    name, _ = refused_cleanly(check_name, text)
    if name is not None:
        assert name == normalize_name(name) and is_valid_name(name)


# ---------------------------------------------------------------------------- DCGAN_LOAD_PLUGINS


# What an environment variable can hold: no NUL byte, no lone surrogate.
ENV_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="onnxruntime,analysis-_. ONNX", max_size=40) | ENV_TEXT)
@example("")
@example(",,,")
@example("onnxruntime")
@example(" ONNX_Runtime , dcgan-analysis ")
def test_load_plugins_variable(value):
    """Any value of DCGAN_LOAD_PLUGINS loads the built-in commands and only the plugins it names."""
    from dcgan_cli import plugins

    saved = os.environ.get(plugins.LOAD_PLUGINS_ENV)
    os.environ[plugins.LOAD_PLUGINS_ENV] = value
    try:
        allowed = plugins.allowed_plugins()
        assert all(name and name == plugins._normalise(name) and "," not in name for name in allowed)
        plugins.reload()
        builtins = {row["name"] for row in plugins.list_plugins() if row["builtin"]}
        assert set(plugins.BUILTIN_PLUGINS) <= builtins
        for info in plugins._get_state().info.values():
            if not info.builtin:
                assert plugins._normalise(info.name) in allowed or plugins._normalise(info.distribution) in allowed
    finally:
        if saved is None:
            os.environ.pop(plugins.LOAD_PLUGINS_ENV, None)
        else:
            os.environ[plugins.LOAD_PLUGINS_ENV] = saved
        plugins.reload()
