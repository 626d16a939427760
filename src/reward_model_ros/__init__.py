"""reward_model_ros: learned, image-based success rewards for robot RL on ROS 2."""

__version__ = "0.1.0"
