"""The rclpy differences between the supported distributions that this package meets.

Kilted (rclpy 9) and Jazzy (rclpy 7) are tested (`make test`, `make test-ros ROS_DISTRO=jazzy`);
Humble (rclpy 3) was checked by reading rclpy's humble branch. Imports nothing from ROS itself.

- ``Subscription.get_publisher_count()`` (publishers *matched* to the subscription) exists since
  rclpy 4 (Iron). On Humble :func:`publisher_count` counts the topic's publishers in the graph.
- A SIGINT/SIGTERM that shuts the context down while ``executor.spin()`` builds its wait set raises
  ``ExternalShutdownException`` on Kilted but ``RCLError`` ("the given context is not valid") on
  Jazzy (seen there; Humble's executor has the same code path): ``node.main`` treats an exception
  out of ``spin()`` after the context was shut down as a normal stop.
- Everything else the package calls has the same signature on all three: ``create_service(...,
  qos_profile=)``, ``create_timer(..., clock=)``, ``create_subscription(..., raw=True)``,
  ``get_publishers_info_by_topic``, ``Context.try_shutdown``, ``rclpy.try_shutdown``,
  ``ExternalShutdownException``, ``get_logger().warning``, ``ParameterDescriptor`` with
  ``dynamic_typing``/``integer_range``/``floating_point_range``, ``declare_parameter`` with
  ``None`` for dynamically typed parameters.
"""


def publisher_count(subscription, node) -> int:
    """Publishers matched to ``subscription`` (rclpy >= 4), else on its topic in the graph (Humble)."""
    count = getattr(subscription, "get_publisher_count", None)
    if count is not None:
        return count()
    return node.count_publishers(subscription.topic_name)
