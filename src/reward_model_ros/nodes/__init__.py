"""Thin rclpy nodes: declare parameters, wire topics and timers, call core/ and rl/."""
