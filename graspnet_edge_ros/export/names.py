"""Old home of the export/runtime tensor names: they live in ``graspnet_edge_ros.contract`` now.

Kept as a re-export so code written against this path keeps working; new code imports the contract.
"""
from graspnet_edge_ros.contract import (SEGMENT_INPUT, SEGMENT_OUTPUT, SINGLE_FILE_INPUT,  # noqa: F401
                                        SINGLE_FILE_OUTPUTS, TensorSpec, single_file_output_specs)
