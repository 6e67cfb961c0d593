"""Typed errors of the ROS-free core.

The library raises these and never exits; the node and the CLI absorb them at their edges
(the node publishes an error status, the CLI prints one line and returns a non-zero code).
InputError and ConfigError are also ValueErrors (a bad value was handed in), so callers that
catch ValueError, the Python convention for bad arguments, keep working.
"""


# Exit codes of the command-line tools (graspnet-edge, training): one line on stderr, then one of these.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = 0, 1, 2, 3, 4


class GraspNetEdgeError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(GraspNetEdgeError, ValueError):
    """The frame, array or value handed in cannot be used (encoding, size, NaN/zero depth, bad intrinsics)."""


class ConfigError(GraspNetEdgeError, ValueError):
    """A parameter value is out of range or of the wrong type."""


class ModelFormatError(GraspNetEdgeError):
    """A model file is missing, unreadable, or does not match the expected layout."""


class ModelError(GraspNetEdgeError):
    """The model loaded but misbehaves: non-finite raw outputs, a failed warm-up, a segment that
    does not take what its manifest says it takes."""


class BackendUnavailableError(GraspNetEdgeError):
    """The requested inference runtime is not importable on this machine."""


class ExportError(GraspNetEdgeError):
    """Exporting a model failed or produced an artefact that does not verify."""


class ReplayError(GraspNetEdgeError):
    """A bag replay could not run (no node on the graph, unreadable bag, node died, ...)."""


class ReplayInterrupted(ReplayError):
    """The replay was stopped (SIGINT/SIGTERM) before it started playing."""
