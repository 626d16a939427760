"""SAC over ROS 2 with the learned reward: ManiSkill PushCube in lockstep, reward_node, rl_trainer.

ros2 launch reward_model_ros sim_rl.launch.py checkpoint:=/path/to/ckpt [output_dir:=runs/rl_ros]

The bridge waits for each step's action (driver lockstep), so a learner slower than the
control rate never trains on actions it did not send; rl_trainer starts every episode
through the bridge's reset service (auto_reset false).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("reward_model_ros")
    args = [
        DeclareLaunchArgument(
            "checkpoint", default_value="", description="reward model checkpoint directory"
        ),
        DeclareLaunchArgument(
            "trainer_params",
            default_value=PathJoinSubstitution([share, "config", "rl_trainer.yaml"]),
            description="parameters of rl_trainer",
        ),
        DeclareLaunchArgument(
            "output_dir", default_value="runs/rl_ros", description="checkpoints, TensorBoard"
        ),
        DeclareLaunchArgument("max_episode_steps", default_value="50", description="steps per episode"),
    ]
    steps = LaunchConfiguration("max_episode_steps")
    bridge = Node(
        package="reward_model_ros",
        executable="maniskill_bridge",
        name="maniskill_bridge",
        parameters=[
            {
                "task": "PushCube-v1",
                "driver": "lockstep",
                "control_mode": "pd_ee_delta_pos",
                "real_time": False,
                "auto_reset": False,
                "max_episode_steps": steps,
                # the camera of config/collect_pushcube.yaml: the classifier was trained on this view
                "camera_width": 128,
                "camera_height": 128,
                "camera_pose": [0.55, 0.0, 0.55, 0.1, 0.0, 0.0],
                "camera_fov": 0.9,
                "show_goal": True,
            }
        ],
        output="screen",
    )
    reward = Node(
        package="reward_model_ros",
        executable="reward_node",
        name="reward_classifier",
        parameters=[
            PathJoinSubstitution([share, "config", "reward.yaml"]),
            {
                "model.checkpoint_path": LaunchConfiguration("checkpoint"),
                "reward_mode": "per_step",
                "image_qos": "reliable",
            },
        ],
        output="screen",
    )
    trainer = Node(
        package="reward_model_ros",
        executable="rl_trainer",
        name="rl_trainer",
        parameters=[
            LaunchConfiguration("trainer_params"),
            {"output_dir": LaunchConfiguration("output_dir"), "max_episode_steps": steps},
        ],
        output="screen",
    )
    return LaunchDescription([*args, bridge, reward, trainer])
