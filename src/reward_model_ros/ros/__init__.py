"""ROS-side helpers shared by nodes, the CLI and the tests (may import rclpy)."""
