"""``python -m graspnet_edge_ros.train`` and ``torchrun ... -m graspnet_edge_ros.train``."""
import sys

from graspnet_edge_ros.train.trainer import main

if __name__ == "__main__":
    sys.exit(main())
