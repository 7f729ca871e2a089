"""Labelers: score images on named attributes so `dcgan concepts auto` can pick exemplars."""
