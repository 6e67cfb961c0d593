"""return_large_buffers: freed frame-sized buffers leave the process (glibc), whichever thread made them."""
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Threads allocate and free 8 MB buffers, as the node's executor threads do with images; then the
# resident memory is read with every buffer freed.
CHURN = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    from graspnet_edge_ros.memory import return_large_buffers

    applied = return_large_buffers() if sys.argv[1] == "set" else False
    def rss():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
    def churn():
        for _ in range(20):
            kept = [np.ones(8 << 20, np.uint8) for _ in range(4)]
            del kept
    np.ones(8 << 20, np.uint8)  # a first large free raises glibc's dynamic threshold
    baseline = rss()
    threads = [threading.Thread(target=churn) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps({"applied": applied, "retained_mb": rss() - baseline}))
""")


def _churn(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    return json.loads(result.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_frame_buffers_leave_the_process():
    default, fixed = _churn("default"), _churn("set")
    assert fixed["applied"] and not default["applied"]
    assert fixed["retained_mb"] < 10, fixed
    assert default["retained_mb"] > fixed["retained_mb"] + 20, (default, fixed)  # what the setting is for
