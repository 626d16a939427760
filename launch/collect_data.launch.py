"""Labelled simulation episodes: the ManiSkill bridge running its scripted driver.

ros2 launch reward_model_ros collect_data.launch.py [target_success:=100] [target_failure:=100]
    [seed:=0] [real_time:=false]

Scripted successes (ManiSkill's motion-planned solutions, holding the success pose) alternate
with failure episodes (grasp beside the cube, no grasp, early release, joint noise, stopping
short, random), each labelled by the simulation's ground truth and announced with its mode
and seed in its EpisodeEvents. Everything stops when both targets are met.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("reward_model_ros")
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "collect_pickcube.yaml"]),
            description="parameters of the bridge",
        ),
        DeclareLaunchArgument("target_success", default_value="5000", description="successful episodes"),
        DeclareLaunchArgument("target_failure", default_value="5000", description="failed episodes"),
        DeclareLaunchArgument("seed", default_value="0", description="seed of the first episode (+1 each)"),
        DeclareLaunchArgument(
            "success_hold_steps", default_value="20", description="steps the final pose is held"
        ),
        DeclareLaunchArgument(
            "real_time", default_value="false", description="step at 20 Hz (false: as fast as possible)"
        ),
    ]
    bridge = Node(
        package="reward_model_ros",
        executable="maniskill_bridge",
        name="maniskill_bridge",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "driver": "scripted",
                "target_success": LaunchConfiguration("target_success"),
                "target_failure": LaunchConfiguration("target_failure"),
                "seed": LaunchConfiguration("seed"),
                "success_hold_steps": LaunchConfiguration("success_hold_steps"),
                "real_time": LaunchConfiguration("real_time"),
            },
        ],
        output="screen",
        on_exit=Shutdown(reason="data collection finished (or the bridge failed: see its log)"),
    )
    return LaunchDescription([*args, bridge])
