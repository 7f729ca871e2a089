"""dcgan-analysis: the DCGAN paper's analyses of a trained model, as a dcgan plugin.

- ``classify``: the discriminator's features for classification (paper, section 5.1);
- ``inspect``: guided backpropagation of the discriminator's strongest features (fig. 5);
- ``neighbours``: nearest training images of samples and a memorisation score;
- ``fid``: Frechet distance and KID with a pluggable feature extractor.

The library modules (``features``, ``classify``, ``guided``, ``neighbours``, ``fid``) use
only dcgan-cli's public API and never import Typer; ``commands`` is the plugin module the
``dcgan`` entry point names.
"""

__version__ = "0.1.0"
