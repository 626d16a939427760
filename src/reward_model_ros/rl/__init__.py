"""Policies, replay buffer, SAC/RLPD and PPO.

Nothing under this package imports rclpy or a ROS message package (test_import_boundaries
enforces it).

Modules: `envs` (the vectorised env protocol, `check_env`), `toy` (PointReach), `buffer`
(replay buffer, RLPD symmetric sampling), `networks`, `sac` (SACConfig, SACLearner,
train_sac), `ppo` (PPOConfig, train_ppo), `checkpoint` (save_policy, load_policy),
`evaluate` (evaluate_policy), `logger` (RunLogger). Import them directly: this package
imports nothing.
"""
