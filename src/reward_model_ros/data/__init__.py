"""Episode bags and datasets without ROS: rosbag2 folders written and read with `rosbags`,
crash recovery, and the dataset builder. No rclpy here (enforced by test_import_boundaries),
so `reward-model process` runs on a training machine without a ROS install."""
