"""Detection statuses: the strings of DetectionResult.status and the GraspArray.msg codes.

Dependency-free, so light tools (replay, bag summaries) name statuses without importing the
pipeline. A test checks STATUS_CODES against the generated message's STATUS_* constants.
"""

STATUS_OK = "ok"
STATUS_NO_VALID_INPUT = "no_valid_input"
STATUS_NO_GRASP = "no_grasp"
STATUS_ERROR = "error"
STATUS_CODES = {STATUS_OK: 0, STATUS_NO_VALID_INPUT: 1, STATUS_NO_GRASP: 2, STATUS_ERROR: 3}
_STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}


def status_name(code: int) -> str:
    """DetectionResult status string of a GraspArray.status code ("status N" for an unknown code)."""
    return _STATUS_NAMES.get(int(code), f"status {code}")
