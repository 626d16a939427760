"""Model, checkpoints, preprocessing, reward mapping, episodes, datasets, training.

Nothing under this package imports rclpy or a ROS message package (test_import_boundaries
enforces it): the core runs and is tested without ROS.
"""
