"""Old home of the split manifest: it lives in ``graspnet_edge_ros.contract`` now.

Kept as a re-export so code written against this path keeps working; new code imports the contract.
"""
from graspnet_edge_ros.contract import (BACKBONE_SEGMENTS, HEAD_LAYOUTS, MANIFEST_FORMAT,  # noqa: F401
                                        MANIFEST_NAME, MANIFEST_VERSION, SegmentEntry, SplitManifest,
                                        geometry_steps)
