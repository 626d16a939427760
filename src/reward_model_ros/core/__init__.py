"""The classifier and what every user of it shares: model, checkpoints (with the decision
settings `evaluate` validated), preprocessing, the camera-name contract, scoring, the reward
mapping and debounce, multi-camera time matching, stamps, config overrides, debug images.

Datasets and bags live in `reward_model_ros.data`, training and evaluation in
`reward_model_ros.training`, policies in `reward_model_ros.rl`. Nothing under this package
imports rclpy or a ROS message package (test_import_boundaries enforces it): the core runs
and is tested without ROS.
"""
