"""Fake of the PyPI ``hobot-dnn-rdkx5`` package (tests only; see test/fakes/README.md)."""
