"""Training, evaluation and file scoring of the success classifier. No rclpy here (enforced
by test_import_boundaries): training runs on machines without ROS."""
