"""`dcgan export`: the generator to ONNX (checked against PyTorch), and TensorRT engines with --trt."""

from typing import Annotated

import typer

from dcgan_cli.commands import ForceOption, JsonOption, Precision, RunOption, pick_run, print_json
from dcgan_cli.hookspecs import hookimpl


def export_command(
    run: RunOption = None,
    precision: Annotated[
        Precision,
        typer.Option(
            help="Also write a half model (generator-fp16/bf16.onnx) or an int8 one (generator-int8.onnx, "
            "quantized by ONNX Runtime), each checked against fp32; TensorRT engines are built in it."
        ),
    ] = Precision.fp32,
    trt: Annotated[
        bool, typer.Option("--trt", help="Build a TensorRT engine too (needs the dcgan-tensorrt engine and a GPU).")
    ] = False,
    opt_batch: Annotated[int, typer.Option(help="TensorRT: the batch size the engine is tuned for.")] = 256,
    max_batch: Annotated[
        int, typer.Option(help="TensorRT: the largest batch one call takes (larger ones are split).")
    ] = 1024,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="TensorRT: rebuild the engine even if one exists.")
    ] = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Export the generator to ONNX, checked against PyTorch.

    It is written to exports/generator.onnx (and a half model with --precision).

    The ONNX model takes z (batch, nz) and returns image (batch, C, H, W) in [-1, 1]; the
    batch axis is dynamic. Running it again keeps an export made from the same weights.
    """
    from dcgan_cli.core.console import console, note
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.engines.base import engine_class
    from dcgan_cli.engines.export import export_generator, record_export
    from dcgan_cli.engines.onnx_files import BuildRequest

    def say(text: str) -> None:
        if not as_json:  # with --json, stdout holds the JSON alone
            console.print(text, markup=False, highlight=False, soft_wrap=True)

    precision = precision.value
    request = BuildRequest(precision, opt_batch, max_batch, rebuild).validate()
    if precision == "bf16" and not trt:
        raise DcganError(
            "a bf16 model is for TensorRT only (ONNX Runtime has no bf16 convolutions): add --trt, "
            "or use --precision fp16 for a half model ONNX Runtime runs"
        )
    builder = None
    if trt:
        builder = engine_class("tensorrt")  # before any work: a missing engine is one clear line
        ok, reason = builder.is_available()
        if not ok:
            raise DcganError(f"cannot build a TensorRT engine here: {reason}")
    run_dir = pick_run(run)
    results = []
    for p in dict.fromkeys(("fp32", precision)):  # fp32 is every engine's reference
        with _status(f"exporting the {p} ONNX model"):
            result = export_generator(run_dir, p, force=force)
        results.append(result)
        what = (
            "kept (already exported from these weights)"
            if result.action == "kept"
            else f"wrote (opset {result.opset}, {result.bytes / 1e6:.1f} MB)"
        )
        say(f"{result.path}: {what}")
        if result.parity is None:
            note(
                "  not verified: ONNX Runtime is not installed. Install the onnxruntime engine "
                "(`pip install -e engines/onnxruntime`) and run `dcgan export` again to check it"
            )
        else:
            q = result.parity
            verdict = "ok" if q.passed else "FAILED"
            say(f"  {p}: {q.summary()}: {verdict}  [{q.runtime}]")
    built = []
    if builder is not None:
        with _status("building the TensorRT engine (minutes the first time)"):
            record = builder.build(run_dir, request)
        built.append({k: v for k, v in record.items() if k != "summary"})
        say(record.get("summary", f"TensorRT engine {record.get('engine')}"))
    path = record_export(run_dir, results, built)
    say(f"Recorded in {path}")
    if as_json:
        print_json({"exports": [r.to_json(run_dir) for r in results], "tensorrt": built, "record": path})


def _status(text: str):
    """A spinner on stderr while something without steps runs (none under DCGAN_QUIET)."""
    import contextlib

    from dcgan_cli.core.console import err_console, quiet

    return contextlib.nullcontext() if quiet() else err_console.status(text)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("export")(export_command)
