"""Datasets: the catalog the plugins fill, the built-in readers, and the training batch order."""
