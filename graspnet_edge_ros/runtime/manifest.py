"""Old home of the split manifest: it lives in ``graspnet_edge_ros.contract`` now.

Kept as a re-export so code written against this path keeps working; new code imports the contract.
"""
from graspnet_edge_ros.contract import (MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION,  # noqa: F401
                                        REQUIRED_SEGMENTS, SegmentEntry, SplitManifest, geometry_steps)
