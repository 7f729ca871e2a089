"""The built-in labelers (digits, classes, celeba): an ordinary plugin. Registering them imports no torch."""

from __future__ import annotations

from dcgan_cli.hookspecs import hookimpl
from dcgan_cli.latent.labelers.celeba import CelebALabeler
from dcgan_cli.latent.labelers.classes import ClassLabeler
from dcgan_cli.latent.labelers.digits import DigitLabeler


@hookimpl
def dcgan_register_labelers(register):
    register(DigitLabeler.NAME, DigitLabeler)
    register(ClassLabeler.NAME, ClassLabeler)
    register(CelebALabeler.NAME, CelebALabeler)
