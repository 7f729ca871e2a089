"""`dcgan import NETG [--netd NETD] --out RUN`: DCGAN weights trained elsewhere, as a run folder."""

from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import ForceOption, JsonOption, print_json
from dcgan_cli.hookspecs import hookimpl


def import_command(
    netg: Annotated[
        Path,
        typer.Argument(
            metavar="NETG",
            help="The generator: a state dict saved with torch.save (netG_epoch_24.pth) or a .safetensors file.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="RUN", help="The run folder to create.", show_default=False)
    ],
    netd: Annotated[
        Path | None,
        typer.Option(
            "--netd", metavar="FILE", help="Its discriminator (netD_epoch_24.pth), for the analyses that use D."
        ),
    ] = None,
    prior: Annotated[
        str, typer.Option(metavar="normal|uniform", help="The distribution z was drawn from in training.")
    ] = "normal",
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            metavar="DATASET",
            help="The dataset it was trained on (see dcgan datasets), for the analyses and concepts auto.",
        ),
    ] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
) -> None:
    """Bring a DCGAN trained elsewhere into a run folder.

    Reads the PyTorch DCGAN example's netG/netD files and plain state dicts with the same
    layout (torch.load with weights_only: pickles holding anything but tensors are refused),
    or safetensors. nz, the widths, the channels and the image size are read from the
    tensor shapes. The new run samples, walks, does arithmetic, exports and benches like
    one that dcgan train wrote; it cannot be trained further (it has no checkpoint).
    """
    from dcgan_cli.core.console import console
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.foreign import describe, import_run, summary
    from dcgan_cli.core.model import PRIORS

    if prior not in PRIORS:
        raise DcganError(f"--prior {prior!r}: use normal or uniform")
    if dataset is not None:
        from dcgan_cli.data.catalog import get_spec

        get_spec(dataset)  # an unknown name is refused before anything is read
    result = import_run(netg, out, netd, prior=prior, dataset=dataset, force=force)
    if as_json:
        print_json(summary(result))
        return
    console.print(describe(result.generator, result.config), highlight=False, soft_wrap=True)
    if result.discriminator is not None:
        console.print(describe(result.discriminator, result.config), highlight=False, soft_wrap=True)
    console.print(f"New run: {result.run} ({result.config.prior} prior)", highlight=False, soft_wrap=True)
    console.print(f"Next: dcgan sample -r {result.run} -n 64 --out grid.png", highlight=False, soft_wrap=True)


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("import")(import_command)
