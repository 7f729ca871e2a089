"""The foundation every layer shares: errors, files, run folders, the model and its files, the prior, devices, images, console, registries. Imports nothing above it."""
