"""The built-in labelers (digits, celeba): an ordinary plugin. Registering them imports no torch."""

from __future__ import annotations

from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.latent.labelers.celeba import CelebALabeler
from dcgan_cli.latent.labelers.digits import DigitLabeler


@hookimpl
def dcgan_register_labelers(register):
    register(DigitLabeler.NAME, DigitLabeler)
    register(CelebALabeler.NAME, CelebALabeler)
