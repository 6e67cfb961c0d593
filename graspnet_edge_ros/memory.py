"""Process-level memory setting for the long-running node (ROS-free; glibc only, a no-op elsewhere)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os

LARGE_BUFFER_BYTES = 1 << 20  # 1 MiB: image rows, clouds and masks are larger, Python objects smaller
_M_MMAP_THRESHOLD = -3        # glibc's mallopt parameter number


def return_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Serve every allocation of ``threshold`` bytes or more with mmap, so that freeing it returns it.

    glibc starts with a 128 KiB threshold but raises it to the size of each large block freed (up to
    32 MiB): after the first frame, frame-sized buffers (a 1280x720 image is 2.8 MB, its cloud
    10 MB) come from the heaps of whichever threads allocated them (the node's executor threads
    deserialise images concurrently) and stay there. A fixed threshold keeps them out of those
    heaps; each large buffer costs its page faults again (a few ms per frame). Leaves an explicit
    ``MALLOC_MMAP_THRESHOLD_`` alone. Returns whether the setting was applied.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))
