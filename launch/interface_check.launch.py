"""Start interface_echo_node, the counterpart of `reward-model check-interfaces --no-spawn-echo`.

ros2 launch reward_model_ros interface_check.launch.py
# then, in the same ROS domain (this machine or another):
reward-model check-interfaces --no-spawn-echo
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    params_file = DeclareLaunchArgument(
        "params_file",
        default_value=PathJoinSubstitution(
            [FindPackageShare("reward_model_ros"), "config", "interface_echo.yaml"]
        ),
        description="parameter file of interface_echo_node",
    )
    echo = Node(
        package="reward_model_ros",
        executable="interface_echo_node",
        name="interface_echo",
        parameters=[LaunchConfiguration("params_file")],
        output="screen",
    )
    return LaunchDescription([params_file, echo])
