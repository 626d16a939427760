"""ManiSkill PickCube bridged into ROS 2, with the reward node on the simulated camera.

ros2 launch reward_model_ros sim.launch.py [checkpoint:=/path/to/ckpt] [real_time:=false]
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
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "sim_pickcube.yaml"]),
            description="parameters of the bridge and the reward node",
        ),
        DeclareLaunchArgument(
            "real_time", default_value="true", description="step at 20 Hz (false: flat out)"
        ),
    ]
    bridge = Node(
        package="reward_model_ros",
        executable="maniskill_bridge",
        name="maniskill_bridge",
        parameters=[LaunchConfiguration("params_file"), {"real_time": LaunchConfiguration("real_time")}],
        output="screen",
    )
    reward = Node(
        package="reward_model_ros",
        executable="reward_node",
        name="reward_classifier",
        parameters=[
            LaunchConfiguration("params_file"),
            {"model.checkpoint_path": LaunchConfiguration("checkpoint")},
        ],
        output="screen",
    )
    return LaunchDescription([*args, bridge, reward])
