"""Hostile files, swept across every command that reads them.

Each case puts one lying file where a command reads it (a pickle named .safetensors,
weights of the wrong shape, an absurd config.json, a truncated ONNX file, a concept bank or
boxes file that is not what it claims) and runs the real command. Every one must end with
exit code 3 (ExitCode.BAD_INPUT) and one `Error:` line that names the file, with no traceback, and must leave
every file the user had byte for byte as it was. A pickle's payload would create a marker
file if anything unpickled it: the marker must never appear.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dcgan_cli.core.errors import ExitCode

MARKER = "UNPICKLED"


class Payload:
    """Unpickling this creates the file ``path`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps({"state_dict": Payload(str(marker))}, protocol=4)


def torch_zip_bytes(marker: Path) -> bytes:
    """What torch.save writes: a zip whose data.pkl is the pickle."""
    buffer = io.BytesIO()
    torch.save({"state_dict": Payload(str(marker))}, buffer)
    return buffer.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (locks excluded: they are the commands' own)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            info = path.stat()
            # The sparse 2 GiB file of one case is not read through: its size and mtime stand for it.
            big = info.st_size > 64 << 20
            digest = f"{info.st_size}-{info.st_mtime_ns}" if big else hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(folder))] = digest
    return found


def assert_refused(result, *needles, before: dict[str, str] | None = None, folder: Path | None = None):
    """Exit code 3 (bad input), one `Error:` line that holds every needle, no traceback, nothing the user had changed."""
    output = result.output
    assert result.exit_code == ExitCode.BAD_INPUT, output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not (Path.cwd() / MARKER).exists(), "the pickle was executed"
    if before is not None:
        after = snapshot(folder)
        changed = [name for name, digest in before.items() if after.get(name) != digest]
        assert not changed, f"changed or removed: {changed}"
    return errors[0]


def spread(cases, commands, per_case: int) -> list[tuple[str, str]]:
    """(case, command) pairs: each case meets ``per_case`` commands, and the commands take turns,
    so every command meets every kind of lie without the whole cross product (it would add
    minutes to the suite, testing the same loader again and again)."""
    cases, commands = list(cases), list(commands)
    pairs, turn = [], 0
    for case in cases:
        for _ in range(min(per_case, len(commands))):
            pairs.append((case, commands[turn % len(commands)]))
            turn += 1
    return pairs


# ---------------------------------------------------------------------------- the run and its inputs

RUN = Path("runs") / "digits-small"


def write_bank(run: Path, nz: int, names=("one", "two")) -> None:
    from dcgan_cli.core.prior import seeded_z

    z = seeded_z(7, 3 * len(names), nz, "normal")
    concepts = {
        name: {"created": "", "source": {"kind": "test"}, "z": z[3 * i : 3 * i + 3].tolist()}
        for i, name in enumerate(names)
    }
    (run / "concepts.json").write_text(
        json.dumps({"format": "dcgan-cli/concepts", "format_version": 1, "concepts": concepts})
    )


def write_sheet(run: Path, n: int = 8) -> Path:
    from dcgan_cli.core.prior import seeded_z
    from dcgan_cli.engines.sampling import sheet_metadata
    from dcgan_cli.engines.sampling import write_sheet as write

    path = run / "sheets" / "sheet-001.z.safetensors"
    write(path, seeded_z(0, n, 100, "normal"), sheet_metadata(run, 0, n, "sheet-001.png", "torch"))
    return path


GOOD_BOXES = {
    "format": "dcgan-cli/boxes",
    "seed": 0,
    "size": 32,
    "samples": [{"index": 0, "boxes": [[4, 4, 20, 20]]}, {"index": 1, "boxes": []}],
}


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """./runs/digits-small with a concept bank, a sheet and a boxes.json beside it (cwd: tmp_path)."""
    write_bank(trained_run, 100)
    write_sheet(trained_run)
    Path("boxes.json").write_text(json.dumps(GOOD_BOXES))
    return trained_run


@pytest.fixture(scope="module")
def onnx_bytes(trained_run_session, tmp_path_factory) -> bytes:
    """exports/generator.onnx of the tiny run every test copies (exported once for the module)."""
    from dcgan_cli.engines.export import export_generator
    from dcgan_cli.engines.onnx_files import onnx_path

    root = tmp_path_factory.mktemp("onnx") / "digits-small"
    shutil.copytree(trained_run_session, root)
    export_generator(root, "fp32", verify=False)
    return onnx_path(root, "fp32").read_bytes()


def put_onnx(run: Path, data: bytes) -> Path:
    path = run / "exports" / "generator.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


# Commands that read the generator's weights (and config.json), with cheap settings.
CPU = ["--device", "cpu"]
GENERATOR_COMMANDS = {
    "sample": ["sample", "-n", "2", "--engine", "torch", *CPU],
    "export": ["export"],
    "walk": ["walk", "--points", "2", "--steps", "1", "--walks", "1", "--engine", "torch", *CPU],
    "arithmetic": ["arithmetic", "one + two", "--variants", "0", "--engine", "torch", *CPU],
    "forget": ["forget", "--boxes", "boxes.json", "--out", "forgotten", *CPU],
    "concepts-auto": ["concepts", "auto", "-n", "8", "--engine", "torch", *CPU],
    "fid": [
        "fid",
        "--dataset",
        "digits",
        "-n",
        "16",
        "--max-real",
        "64",
        "--extractor",
        "discriminator",
        "--engine",
        "torch",
        "--no-cache",
        *CPU,
    ],
}
DISCRIMINATOR_COMMANDS = {
    "classify": ["classify", "-k", "2", "--draws", "1", "--max-images", "64", "--no-cache", *CPU],
    "inspect": ["inspect", "--features", "1", "--per-feature", "1", "--images", "16", *CPU],
    "fid": GENERATOR_COMMANDS["fid"],
}
RESUME = ["train", "--resume", str(RUN), "--max-steps", "99"]  # a refused resume must not record the new budget


def generator_state() -> dict[str, torch.Tensor]:
    return load_file(RUN / "generator.safetensors")


def rewrite(path: Path, mutate) -> None:
    """Rewrite a dcgan safetensors file with its tensors changed by ``mutate`` (metadata kept)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    mutate(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


# ---------------------------------------------------------------------------- pickles


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """The marker check below means something only if unpickling the payload does create it."""
    marker = tmp_path / "proof"
    pickle.loads(pickle_bytes(marker))
    assert marker.exists()
    marker.unlink()
    torch.load(io.BytesIO(torch_zip_bytes(marker)), weights_only=False)
    assert marker.exists()


PICKLES = {"pickle": (pickle_bytes, "a Python pickle"), "torch.save zip": (torch_zip_bytes, "a zip archive")}


@pytest.mark.parametrize("kind", PICKLES)
@pytest.mark.parametrize(
    "target, command",
    [
        *(("generator.safetensors", c) for c in GENERATOR_COMMANDS),
        *(("discriminator.safetensors", c) for c in DISCRIMINATOR_COMMANDS),
    ],
)
def test_a_pickle_in_place_of_weights_is_refused_and_never_run(cli, run, tmp_path, kind, target, command):
    make, phrase = PICKLES[kind]
    (run / target).write_bytes(make(tmp_path / MARKER))
    before = snapshot(tmp_path)
    commands = GENERATOR_COMMANDS if target.startswith("generator") else DISCRIMINATOR_COMMANDS
    line = assert_refused(cli(commands[command]), target, phrase, "never loads pickles", before=before, folder=tmp_path)
    assert "Convert the weights to safetensors" in line


@pytest.mark.parametrize("kind", PICKLES)
def test_pickled_checkpoints_are_not_resumed_from(cli, run, tmp_path, kind):
    make, phrase = PICKLES[kind]
    for checkpoint in (run / "checkpoints").glob("*.safetensors"):
        checkpoint.write_bytes(make(tmp_path / MARKER))
    before = snapshot(tmp_path)
    assert_refused(cli(RESUME), "checkpoints", phrase, before=before, folder=tmp_path)


@pytest.mark.parametrize("name", ["inception.safetensors", "inception.pt"])
@pytest.mark.parametrize("kind", PICKLES)
def test_pickled_inception_weights_are_refused(cli, run, tmp_path, name, kind):
    make, phrase = PICKLES[kind]
    if name.endswith(".pt"):  # read as torch.save's format, with weights_only: its refusal says why
        phrase = "dcgan never unpickles"
    Path(name).write_bytes(make(tmp_path / MARKER))
    before = snapshot(tmp_path)
    args = [
        "fid",
        "--dataset",
        "digits",
        "-n",
        "16",
        "--max-real",
        "64",
        "--extractor",
        "inception",
        "--inception-weights",
        name,
        "--no-cache",
        *CPU,
    ]
    assert_refused(cli(args), name, phrase, before=before, folder=tmp_path)


def test_a_pickle_named_as_the_run_is_not_a_run(cli, run, tmp_path):
    Path("generator.pt").write_bytes(torch_zip_bytes(tmp_path / MARKER))
    before = snapshot(tmp_path)
    assert_refused(
        cli(["sample", "-r", "generator.pt", "-n", "2"]),
        "generator.pt is not a run folder",
        before=before,
        folder=tmp_path,
    )


# ---------------------------------------------------------------------------- safetensors that lie


def _wrong_shape(t):
    t["blocks.0.conv.weight"] = t["blocks.0.conv.weight"][:, :-1]


def _int8(t):
    t["blocks.0.conv.weight"] = t["blocks.0.conv.weight"].to(torch.int8)


def _float_counter(t):
    t["blocks.0.bn.num_batches_tracked"] = t["blocks.0.bn.num_batches_tracked"].float()


def _float64_overflow(t):
    # Finite in float64, infinite once cast to the model's float32.
    t["blocks.0.conv.weight"] = t["blocks.0.conv.weight"].double() * 1e300


def _nan(t):
    t["to_image.conv.weight"] = torch.full_like(t["to_image.conv.weight"], float("nan"))


def _missing(t):
    del t["blocks.1.bn.running_var"]


def _extra(t):
    t["blocks.9.conv.weight"] = torch.zeros(2, 2)


def _empty(t):
    t.clear()
    t["nothing"] = torch.zeros(1)


LIES = {
    "wrong shape": (_wrong_shape, "has shape"),
    "int8 weights": (_int8, "dtype torch.int8"),
    "float step counter": (_float_counter, "dtype torch.float32"),
    "float64 beyond float32": (_float64_overflow, "NaN or infinite"),
    "NaN weights": (_nan, "NaN or infinite"),
    "missing key": (_missing, "missing 1"),
    "extra key": (_extra, "unexpected 1"),
    "other tensors": (_empty, "missing"),
}


@pytest.mark.parametrize("lie, command", spread(LIES, GENERATOR_COMMANDS, 2))
def test_generator_weights_that_lie_are_refused(cli, run, tmp_path, lie, command):
    mutate, phrase = LIES[lie]
    rewrite(run / "generator.safetensors", mutate)
    before = snapshot(tmp_path)
    assert_refused(cli(GENERATOR_COMMANDS[command]), "generator.safetensors", phrase, before=before, folder=tmp_path)


@pytest.mark.parametrize(
    "lie, command",
    spread(
        ["wrong shape", "int8 weights", "missing key", "extra key", "float64 beyond float32"],
        ["classify", "inspect"],
        1,
    ),
)
def test_discriminator_weights_that_lie_are_refused(cli, run, tmp_path, lie, command):
    mutate, phrase = LIES[lie]
    mutate_d = {"wrong shape": lambda t: t.__setitem__("blocks.0.conv.weight", t["blocks.0.conv.weight"][:-1])}.get(
        lie, mutate
    )
    rewrite(run / "discriminator.safetensors", mutate_d)
    before = snapshot(tmp_path)
    assert_refused(
        cli(DISCRIMINATOR_COMMANDS[command]), "discriminator.safetensors", phrase, before=before, folder=tmp_path
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_in_another_float_precision_are_cast_and_used(cli, run, tmp_path, dtype):
    """Half or double weights are still the model's weights: they are cast to float32, not refused."""
    reference = cli(["sample", "-n", "4", "--out", "a.npz", "--engine", "torch", *CPU])
    assert reference.exit_code == 0, reference.output
    rewrite(
        run / "generator.safetensors",
        lambda t: t.update({k: v.to(dtype) for k, v in t.items() if v.is_floating_point()}),
    )
    result = cli(["sample", "-n", "4", "--out", "b.npz", "--engine", "torch", *CPU])
    assert result.exit_code == 0, result.output
    import numpy as np

    a, b = np.load("a.npz")["images"], np.load("b.npz")["images"]
    tolerance = 0 if dtype == torch.float64 else 8  # uint8 levels: half weights round slightly
    assert np.abs(a.astype(int) - b.astype(int)).max() <= tolerance


@pytest.mark.parametrize("lie", ["wrong shape", "int8 weights", "missing key"])
def test_checkpoints_that_lie_are_not_resumed_from(cli, run, tmp_path, lie):
    mutate, _ = LIES[lie]

    def in_generator(t):
        g = {k.removeprefix("G."): v for k, v in t.items() if k.startswith("G.")}
        mutate(g)
        for k in [k for k in t if k.startswith("G.")]:
            del t[k]
        t.update({f"G.{k}": v for k, v in g.items()})

    for checkpoint in (run / "checkpoints").glob("*.safetensors"):
        rewrite(checkpoint, in_generator)
    before = snapshot(tmp_path)
    assert_refused(cli(RESUME), "step-", before=before, folder=tmp_path)


# ---------------------------------------------------------------------------- config.json that lies


def _config_with(**model):
    def write(run: Path) -> None:
        config = json.loads((run / "config.json").read_text())
        config["model"].update(model)
        (run / "config.json").write_text(json.dumps(config))

    return write


def _config_text(text: str):
    return lambda run: (run / "config.json").write_text(text)


CONFIGS = {
    "nz 10**9": (_config_with(nz=10**9), "nz must be between"),
    "ngf 10**7": (_config_with(ngf=10**7), "ngf must be between"),
    "ndf 10**7": (_config_with(ndf=10**7), "ndf must be between"),
    "size 4096": (_config_with(size=4096), "size must be one of"),
    "size as text": (_config_with(size="32"), "size must be int"),
    "nz as float": (_config_with(nz=100.0), "nz must be int"),
    "channels true": (_config_with(channels=True), "channels must be int"),
    "prior unknown": (_config_with(prior="cauchy"), "prior must be"),
    "unknown key": (_config_with(depth=3), "unknown model arguments depth"),
    "not JSON": (_config_text("{'model': nope"), "not valid JSON"),
    "a JSON list": (_config_text("[1, 2, 3]"), "not a dcgan-cli run config"),
    "model a list": (_config_text('{"model": [32, 1]}'), "expected a JSON object"),
    "deeply nested": (_config_text("[" * 100_000 + "]" * 100_000), "config.json"),
    "a 5000-digit nz": (_config_text('{"model": {"nz": ' + "9" * 5000 + "}}"), "config.json"),
    "not UTF-8": (lambda run: (run / "config.json").write_bytes(b"\xff\xfe{\x00"), "cannot read"),
}
CONFIG_COMMANDS = {
    **{k: GENERATOR_COMMANDS[k] for k in ("sample", "export", "walk", "arithmetic", "forget", "concepts-auto")},
    "classify": DISCRIMINATOR_COMMANDS["classify"],
    "resume": RESUME,
    "bench": ["bench", "--engines", "torch", "--batch-sizes", "1", "--min-time", "0.01", *CPU],
    "concepts-add": ["concepts", "add", "three", "--samples", "1,2"],
}


@pytest.mark.parametrize("lie, command", spread(CONFIGS, CONFIG_COMMANDS, 2))
def test_a_config_that_lies_is_refused(cli, run, tmp_path, lie, command):
    write, phrase = CONFIGS[lie]
    write(run)
    before = snapshot(tmp_path)
    assert_refused(cli(CONFIG_COMMANDS[command]), "config.json", phrase, before=before, folder=tmp_path)


# ---------------------------------------------------------------------------- ONNX files that lie

ONNX_COMMANDS = {
    "sample": ["sample", "-n", "2", "--engine", "onnxruntime", *CPU],
    "bench": ["bench", "--engines", "onnxruntime", "--batch-sizes", "1", "--min-time", "0.01", *CPU],
}
ONNX_LIES = {
    "truncated": (lambda good: good[: len(good) // 2], "generator.onnx"),
    "truncated to a few bytes": (lambda good: good[:7], "generator.onnx"),
    "empty": (lambda good: b"", "generator.onnx"),
    "a PNG": (lambda good: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "generator.onnx"),
    "text": (lambda good: b"this is not a model\n" * 50, "generator.onnx"),
    "a pickle": (None, "generator.onnx"),
}


@pytest.mark.parametrize("lie", ONNX_LIES)
@pytest.mark.parametrize("command", ONNX_COMMANDS)
def test_an_onnx_file_that_lies_is_refused(cli, run, tmp_path, onnx_bytes, lie, command):
    make, phrase = ONNX_LIES[lie]
    put_onnx(run, pickle_bytes(tmp_path / MARKER) if make is None else make(onnx_bytes))
    before = snapshot(tmp_path)
    line = assert_refused(cli(ONNX_COMMANDS[command]), phrase, before=before, folder=tmp_path)
    assert "dcgan export" in line


def test_the_intact_onnx_file_runs(cli, run, onnx_bytes):
    """The lies above are refused for being lies: the same commands run on the real export."""
    put_onnx(run, onnx_bytes)
    result = cli(ONNX_COMMANDS["sample"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------- TensorRT engine records that lie


@pytest.fixture
def trt_run(run, onnx_bytes):
    """The run with an ONNX export, an engine file and an honest record of it (built on MACHINE)."""
    dt = pytest.importorskip("dcgan_tensorrt")
    from dcgan_cli.engines.onnx_files import onnx_path

    put_onnx(run, onnx_bytes)
    engine_path, record_path = dt.engine_paths(run, "fp32")
    engine_path.write_bytes(b"plan bytes TensorRT would deserialise")
    record = dt.engine_metadata(
        tensorrt_version=MACHINE[0],
        gpu_name=MACHINE[1],
        compute_capability=MACHINE[2],
        precision="fp32",
        opt_batch=256,
        max_batch=1024,
        onnx_file=onnx_path(run, "fp32"),
        onnx_sha256=hashlib.sha256(onnx_path(run, "fp32").read_bytes()).hexdigest(),
        engine_sha256=hashlib.sha256(engine_path.read_bytes()).hexdigest(),
        build_seconds=1.0,
        timing_cache=None,
    )
    record_path.write_text(json.dumps(record))
    return run


MACHINE = ("10.9.0.34", "NVIDIA H100 80GB HBM3", "9.0")


def _record_edit(edit):
    def apply(record_path: Path) -> None:
        record = json.loads(record_path.read_text())
        edit(record)
        record_path.write_text(json.dumps(record))

    return apply


TRT_LIES = {
    "another ONNX file": (_record_edit(lambda r: r["onnx"].update(sha256="0" * 64)), "another ONNX file"),
    "another TensorRT": (_record_edit(lambda r: r.update(tensorrt="8.6.1")), "built with TensorRT 8.6.1"),
    "another GPU": (
        _record_edit(lambda r: r["gpu"].update(name="NVIDIA A100", compute_capability="8.0")),
        "built for NVIDIA A100",
    ),
    "another precision": (_record_edit(lambda r: r.update(precision="fp16")), "fp16 engine"),
    "another engine file": (_record_edit(lambda r: r.update(engine_sha256="f" * 64)), "does not match its record"),
    "malformed JSON": (lambda p: p.write_text('{"format": "dcgan-cli/tensorrt-engine", '), "not valid JSON"),
    "a JSON list": (lambda p: p.write_text("[]"), "not a TensorRT engine record"),
    "no format": (_record_edit(lambda r: r.pop("format")), "not a dcgan-cli TensorRT engine record"),
    "no gpu": (_record_edit(lambda r: r.pop("gpu")), "gpu"),
    "gpu as text": (_record_edit(lambda r: r.update(gpu="H100")), "gpu"),
    "onnx as a list": (_record_edit(lambda r: r.update(onnx=["generator.onnx"])), "onnx"),
    "no batch": (_record_edit(lambda r: r.pop("batch")), "batch"),
    "batch max as text": (_record_edit(lambda r: r["batch"].update(max="lots")), "batch"),
    "batch max zero": (_record_edit(lambda r: r["batch"].update(max=0)), "batch"),
    "no engine hash": (_record_edit(lambda r: r.pop("engine_sha256")), "engine"),
}


@pytest.mark.parametrize("lie", TRT_LIES)
def test_a_tensorrt_record_that_lies_is_refused_before_the_engine_is_deserialised(trt_run, tmp_path, lie):
    """checked_engine is the gate TensorRTEngine passes before deserialize_cuda_engine: everything it
    reads is the record, the ONNX file and the engine's bytes, so it runs here without TensorRT."""
    import dcgan_tensorrt as dt
    from dcgan_cli.core.errors import DcganError

    edit, phrase = TRT_LIES[lie]
    engine_path, record_path = dt.engine_paths(trt_run, "fp32")
    edit(record_path)
    before = snapshot(tmp_path)
    with pytest.raises(DcganError) as err:
        dt.checked_engine(trt_run, "fp32", MACHINE)
    message = str(err.value)
    assert "\n" not in message and phrase in message, message
    assert "generator-fp32.engine" in message and ("--rebuild" in message or "export" in message), message
    assert snapshot(tmp_path) == before


def test_the_honest_tensorrt_record_passes_the_check(trt_run):
    import dcgan_tensorrt as dt

    record, data = dt.checked_engine(trt_run, "fp32", MACHINE)
    assert data == b"plan bytes TensorRT would deserialise" and record["batch"]["max"] == 1024


def test_sample_with_tensorrt_says_why_it_cannot_run_here(cli, trt_run, tmp_path):
    """Through the CLI the record check is reached only where TensorRT and CUDA are; here the
    command stops earlier, with one line saying what is missing."""
    import dcgan_tensorrt as dt

    if dt.TensorRTEngine.is_available()[0]:
        pytest.skip("TensorRT and CUDA are present: the record checks above cover the refusal")
    before = snapshot(tmp_path)
    assert_refused(cli(["sample", "-n", "2", "--engine", "tensorrt"]), "tensorrt", before=before, folder=tmp_path)


# ---------------------------------------------------------------------------- concept banks that lie


def _bank(concepts, **top):
    """A bank where concept 'one' lies and 'two' is sound (so `one + two` reaches the lie)."""
    if isinstance(concepts, dict):
        concepts = {**concepts, "two": {"z": Z}}
    doc = {"format": "dcgan-cli/concepts", "format_version": 1, "concepts": concepts, **top}
    return lambda path: path.write_text(json.dumps(doc))


def _huge(path: Path) -> None:
    # Sparse: the size is what a reader sees first, the disk holds almost nothing.
    with open(path, "wb") as f:
        f.write(b'{"format": "dcgan-cli/concepts", "concepts": {')
        f.truncate(2 << 30)


Z = [[0.1] * 100] * 3
BANKS = {
    "not JSON": (lambda p: p.write_text("one: [0.1, 0.2]"), "not valid JSON"),
    "a JSON list": (lambda p: p.write_text("[]"), "not a dcgan-cli/concepts file"),
    "no format": (lambda p: p.write_text(json.dumps({"concepts": {"one": {"z": Z}}})), "not a dcgan-cli/concepts file"),
    "concepts a list": (_bank([{"z": Z}]), "not a dcgan-cli/concepts file"),
    "format_version text": (_bank({"one": {"z": Z}}, format_version="2"), "format_version"),
    "format_version newer": (_bank({"one": {"z": Z}}, format_version=9), "newer dcgan-cli"),
    "entry a list": (_bank({"one": Z}), "'one'"),
    "z missing": (_bank({"one": {"vectors": Z}}), "'one'"),
    "z of text": (_bank({"one": {"z": [["a"] * 100]}}), "'one'"),
    "z ragged": (_bank({"one": {"z": [[0.1] * 100, [0.1] * 99]}}), "'one'"),
    "z a flat list": (_bank({"one": {"z": [0.1] * 100}}), "'one'"),
    "z empty": (_bank({"one": {"z": []}}), "'one'"),
    "z NaN": (
        lambda p: p.write_text('{"format": "dcgan-cli/concepts", "concepts": {"one": {"z": [[NaN, 0.1]]}}}'),
        "'one'",
    ),
    "z Infinity": (
        lambda p: p.write_text('{"format": "dcgan-cli/concepts", "concepts": {"one": {"z": [[Infinity, 0.1]]}}}'),
        "'one'",
    ),
    "z an integer beyond float": (_bank({"one": {"z": [[10**400] * 100]}}), "'one'"),
    "scores of text": (_bank({"one": {"z": Z, "scores": ["high"] * 3}}), "'one'"),
    "source a list": (_bank({"one": {"z": Z, "source": ["sheet"]}}), "'one'"),
    "name not a concept name": (_bank({"1 + 2": {"z": Z}}), "'1 + 2'"),
    "deeply nested": (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "concepts.json"),
    "huge file": (_huge, "too large"),
}
BANK_COMMANDS = {
    "arithmetic": ["arithmetic", "one + two", "--variants", "0", "--engine", "torch", *CPU],
    "walk": ["walk", "--through", "one,two", "--steps", "1", "--engine", "torch", *CPU],
    "concepts-list": ["concepts", "list"],
    "concepts-list-json": ["concepts", "list", "--json"],
    "concepts-add": ["concepts", "add", "three", "--samples", "1,2"],
    "concepts-remove": ["concepts", "remove", "one"],
}


@pytest.mark.parametrize(
    "lie, command",
    [*spread(BANKS, [c for c in BANK_COMMANDS if c != "concepts-list"], 1), *((lie, "concepts-list") for lie in BANKS)],
)
def test_a_concept_bank_that_lies_is_refused(cli, run, tmp_path, lie, command):
    write, phrase = BANKS[lie]
    write(run / "concepts.json")
    before = snapshot(tmp_path)
    line = assert_refused(cli(BANK_COMMANDS[command]), "concepts.json", phrase, before=before, folder=tmp_path)
    if lie not in ("format_version newer",):
        assert "restore it" in line or "rebuild" in line or "move it away" in line, line


@pytest.mark.parametrize("command", ["arithmetic", "walk"])
def test_a_bank_of_another_nz_is_refused_by_what_uses_the_vectors(cli, run, tmp_path, command):
    write_bank(run, 64)
    before = snapshot(tmp_path)
    assert_refused(cli(BANK_COMMANDS[command]), "concepts.json", "64-dimensional", before=before, folder=tmp_path)


# ---------------------------------------------------------------------------- boxes files that lie

SHEET = "sheets/sheet-001.z.safetensors"


def _boxes(**doc):
    full = {"format": "dcgan-cli/boxes", "size": 32, **doc}
    return {k: v for k, v in full.items() if v is not None}


BOXES = {
    "not JSON": ("samples: 0 [4, 4, 20, 20]", "not valid JSON"),
    "a JSON list": ([[4, 4, 20, 20]], '"samples" list'),
    "no samples": (_boxes(seed=0), '"samples" list'),
    "samples an object": (_boxes(seed=0, samples={"0": [[4, 4, 20, 20]]}), '"samples" list'),
    "another format": (_boxes(seed=0, samples=[], format="coco"), "format 'coco'"),
    "another size": (_boxes(seed=0, size=64, samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]), "64x64"),
    "neither sheet nor seed": (_boxes(samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]), 'either "sheet"'),
    "both sheet and seed": (
        _boxes(seed=0, sheet=SHEET, samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]),
        'either "sheet"',
    ),
    "negative seed": (_boxes(seed=-1, samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]), '"seed"'),
    "seed as text": (_boxes(seed="0", samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]), '"seed"'),
    "seed true": (_boxes(seed=True, samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}]), '"seed"'),
    "entry without index": (_boxes(seed=0, samples=[{"boxes": [[4, 4, 20, 20]]}]), "samples[0]"),
    "entry a list": (_boxes(seed=0, samples=[[0, [4, 4, 20, 20]]]), "samples[0]"),
    "negative index": (_boxes(seed=0, samples=[{"index": -3, "boxes": [[4, 4, 20, 20]]}]), "index must be"),
    "index as float": (_boxes(seed=0, samples=[{"index": 1.5, "boxes": [[4, 4, 20, 20]]}]), "index must be"),
    "index listed twice": (
        _boxes(seed=0, samples=[{"index": 0, "boxes": [[4, 4, 20, 20]]}, {"index": 0, "boxes": []}]),
        "listed twice",
    ),
    "index beyond the sheet": (_boxes(sheet=SHEET, samples=[{"index": 8, "boxes": [[4, 4, 20, 20]]}]), "no sample 8"),
    "sheet missing": (
        _boxes(sheet="sheets/sheet-404.z.safetensors", samples=[{"index": 0, "boxes": [[1, 1, 5, 5]]}]),
        "not found",
    ),
    "sheet a number": (_boxes(sheet=1, samples=[{"index": 0, "boxes": [[1, 1, 5, 5]]}]), '"sheet" must be a path'),
    "sheet name too long": (_boxes(sheet="s" * 5000, samples=[{"index": 0, "boxes": [[1, 1, 5, 5]]}]), "sheet"),
    "sheet name with NUL": (
        _boxes(sheet="sheet\u0000.z.safetensors", samples=[{"index": 0, "boxes": [[1, 1, 5, 5]]}]),
        "sheet",
    ),
    "sheet is the generator": (
        _boxes(sheet="generator.safetensors", samples=[{"index": 0, "boxes": [[1, 1, 5, 5]]}]),
        "generator.safetensors",
    ),
    "boxes not a list": (_boxes(seed=0, samples=[{"index": 0, "boxes": "4,4,20,20"}]), '"boxes" must be a list'),
    "box of three": (_boxes(seed=0, samples=[{"index": 0, "boxes": [[4, 4, 20]]}]), "four numbers"),
    "box of text": (_boxes(seed=0, samples=[{"index": 0, "boxes": [["4", 4, 20, 20]]}]), "four numbers"),
    "negative box": (_boxes(seed=0, samples=[{"index": 0, "boxes": [[-4, 4, 20, 20]]}]), "outside the 32x32 image"),
    "box beyond the image": (
        _boxes(seed=0, samples=[{"index": 0, "boxes": [[4, 4, 40, 20]]}]),
        "outside the 32x32 image",
    ),
    "inverted box": (
        _boxes(seed=0, samples=[{"index": 0, "boxes": [[20, 4, 4, 20]]}]),
        "outside the 32x32 image or empty",
    ),
    "box of NaN": (
        '{"format": "dcgan-cli/boxes", "seed": 0, "samples": [{"index": 0, "boxes": [[NaN, 4, 20, 20]]}]}',
        "four numbers",
    ),
    "no positives": (_boxes(seed=0, samples=[{"index": 0, "boxes": []}, {"index": 1}]), "no boxes"),
    "no samples at all": (_boxes(seed=0, samples=[]), "no boxes"),
    "boxes cover everything": (
        _boxes(seed=0, samples=[{"index": 0, "boxes": [[0, 0, 32, 32]]}]),
        "cover every position",
    ),
}


@pytest.mark.parametrize("lie", BOXES)
def test_a_boxes_file_that_lies_is_refused(cli, run, tmp_path, lie):
    doc, phrase = BOXES[lie]
    Path("boxes.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    before = snapshot(tmp_path)
    line = assert_refused(cli(GENERATOR_COMMANDS["forget"]), phrase, before=before, folder=tmp_path)
    assert "boxes.json" in line or lie == "boxes cover everything", line
    assert not Path("forgotten").exists(), "a refused forget must not leave a half-made run"
