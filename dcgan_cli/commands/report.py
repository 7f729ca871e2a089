"""`dcgan report`: one self-contained HTML page of a run."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import ForceOption, JsonOption, RunOption, pick_run, print_json, refuse_overwrite
from dcgan_cli.hookspecs import hookimpl


def report_command(
    run: RunOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="HTML file to write. Default: RUN/report.html, rewritten each time."
        ),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in your web browser.")] = False,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a run's report: one self-contained HTML page.

    Config, curves, every epoch's samples and the results of the analyses.

    Images and data are inside the file; it opens from disk with no server and no network.
    """
    import webbrowser

    from dcgan_cli.core.console import console, err_console
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.runs import RunPaths
    from dcgan_cli.report.page import is_report, write_report

    run_dir = pick_run(run)
    if out is not None:
        if out.suffix.lower() not in (".html", ".htm"):
            raise DcganError(f"--out {out}: the report is an HTML page; give a file name ending in .html")
        if out.is_dir():
            raise DcganError(f"--out {out} is a folder; give a file name such as {RunPaths(out).report}")
        refuse_overwrite(out, force)
    else:
        default = RunPaths(run_dir).report
        # The run's own report is derived from the run alone, so rewriting it loses nothing;
        # a file of that name that we did not write is kept unless --force.
        if default.exists() and not force and not is_report(default):
            raise DcganError(
                f"{default} exists and is not a report written by dcgan; pass --force to replace it "
                "or --out to write the report elsewhere"
            )
    result = write_report(run_dir, out)
    for message in result.warnings:
        err_console.print(f"[yellow]Warning:[/] {message}", soft_wrap=True, highlight=False, markup=True)
    size_mb = result.size / 1e6
    if as_json:
        print_json(dict(path=result.path, bytes=result.size, sections=result.sections, warnings=result.warnings))
    else:
        console.print(
            f"Report: {result.path} ({size_mb:.1f} MB): {', '.join(result.sections)}", soft_wrap=True, highlight=False
        )
    if open_browser:
        uri = result.path.resolve().as_uri()
        if not webbrowser.open(uri):
            err_console.print(
                f"No web browser could be started here; open {uri} yourself.", soft_wrap=True, highlight=False
            )


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("report")(report_command)
