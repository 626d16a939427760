"""Labelled simulation episodes into bags: the ManiSkill bridge's scripted driver and the recorder.

ros2 launch reward_model_ros collect_data.launch.py [target_success:=100] [target_failure:=100]
    [save_dir:=runs/episodes] [seed:=0] [real_time:=false]

Scripted successes (ManiSkill's motion-planned solutions, holding the success pose) alternate
with failure episodes (grasp beside the cube, no grasp, early release, joint noise, stopping
short, random), each labelled by the simulation's ground truth and announced with its mode
and seed in its EpisodeEvents. recorder_node writes one bag per episode into
<save_dir>/success/ and <save_dir>/failure/. The bridge waits until the recorder subscribes,
so the first episode is recorded from its first frame; everything stops when the recorder
has both targets.
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
        DeclareLaunchArgument("save_dir", default_value="runs/episodes", description="where the bags go"),
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
    )
    recorder = Node(
        package="reward_model_ros",
        executable="recorder_node",
        name="recorder",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "save_dir": LaunchConfiguration("save_dir"),
                "target_success": LaunchConfiguration("target_success"),
                "target_failure": LaunchConfiguration("target_failure"),
            },
        ],
        output="screen",
        on_exit=Shutdown(reason="recording finished (or the recorder failed: see its log)"),
    )
    return LaunchDescription([*args, bridge, recorder])
