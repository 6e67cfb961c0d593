"""The ROS 2 layer: the rclpy node, message conversions and the on-demand service.

The only part of the package allowed to import rclpy or ROS messages; everything it computes
comes from the ROS-free core.
"""
