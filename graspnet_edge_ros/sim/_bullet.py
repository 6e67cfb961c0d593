"""Lazy pybullet import: the simulator is an optional extra that the robot runtime never loads."""
from __future__ import annotations

import os
import sys

from graspnet_edge_ros.errors import BackendUnavailableError

INSTALL_HINT = "pybullet is not installed: pip install .[sim] (or pip install pybullet==3.2.7)"


def import_pybullet():
    """(pybullet, pybullet_data), or BackendUnavailableError with the install hint."""
    try:
        if sys.modules.get("pybullet") is None:
            # pybullet prints its build time from C at import: keep the CLI's output clean.
            with _quiet_fds():
                import pybullet  # noqa: F401
        import pybullet
        import pybullet_data
    except ImportError as exc:
        raise BackendUnavailableError(INSTALL_HINT) from exc

    return pybullet, pybullet_data


class _quiet_fds:
    """Point file descriptors 1 and 2 at /dev/null (C-level output included) for a block."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        try:
            import ctypes

            ctypes.CDLL(None).fflush(None)  # C stdio buffers go to /dev/null, not to the terminal later
        except (OSError, AttributeError):
            pass
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
