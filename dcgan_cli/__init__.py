"""dcgan-cli: train, export and study DCGANs (Radford, Metz, Chintala 2015).

Plugin authors import from ``dcgan_cli.api`` (the public API, docs/plugins.md); the names
here are the two most used ones, kept for scripts: ``hookimpl`` and ``load_generator``.
"""

__version__ = "0.1.0"

from dcgan_cli.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl", "load_discriminator", "load_generator"]


def load_generator(path, device="cpu"):
    """Load a trained generator (eval mode) from a run folder or generator.safetensors."""
    from dcgan_cli.core.networks import load_generator as _load

    return _load(path, device=device)


def load_discriminator(path, device="cpu"):
    """Load a trained discriminator (eval mode) from a run folder or discriminator.safetensors."""
    from dcgan_cli.core.networks import load_discriminator as _load

    return _load(path, device=device)
