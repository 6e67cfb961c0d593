"""Fake of the board image's ``hobot_dnn`` package (tests only; see test/fakes/README.md)."""
