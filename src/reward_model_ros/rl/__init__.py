"""Policies, replay buffer, SAC/RLPD and PPO.

Nothing under this package imports rclpy or a ROS message package (test_import_boundaries
enforces it).
"""
