"""dcgan-cli: train, export and study DCGANs (Radford, Metz, Chintala 2015)."""

__version__ = "0.1.0"

from dcgan_cli.hookspecs import hookimpl  # noqa: E402  (plugins write @dcgan_cli.hookimpl)

__all__ = ["__version__", "hookimpl", "load_generator"]


def load_generator(path, device="cpu"):
    """Load a trained generator (eval mode) from a run folder or generator.safetensors."""
    from dcgan_cli.checkpoint import load_generator as _load

    return _load(path, device=device)
