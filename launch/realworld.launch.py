"""The reward classifier on a real robot's camera(s).

    ros2 launch reward_model_ros realworld.launch.py checkpoint:=/path/to/ckpt
    # a RealSense (or any driver) already publishing:
    ros2 launch reward_model_ros realworld.launch.py checkpoint:=/path/to/ckpt \
        use_camera_node:=false image_topic:=/camera/camera/color/image_raw
    # a USB camera or a video file through camera_node:
    ros2 launch reward_model_ros realworld.launch.py camera_source:=/dev/video0 rviz:=true

Several cameras: list them in image_topics of the params_file (config/reward.yaml).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("reward_model_ros")
    args = [
        DeclareLaunchArgument(
            "checkpoint",
            default_value="",
            description="checkpoint directory; empty = untrained model (demo only)",
        ),
        DeclareLaunchArgument(
            "image_topic",
            default_value="image_raw",
            description="camera topic to score, e.g. /camera/camera/color/image_raw",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument(
            "use_camera_node",
            default_value="true",
            description="start camera_node (false: a driver already publishes image_topic)",
        ),
        DeclareLaunchArgument(
            "camera_source",
            default_value="0",
            description="camera_node source: device index, /dev/videoN, video file or URL",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "reward.yaml"]),
            description="reward_node parameters",
        ),
        DeclareLaunchArgument(
            "camera_params_file",
            default_value=PathJoinSubstitution([share, "config", "camera.yaml"]),
            description="camera_node parameters",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="false", description="start rviz2 with the camera and debug image"
        ),
    ]
    camera = Node(
        package="reward_model_ros",
        executable="camera_node",
        name="camera",
        namespace=LaunchConfiguration("namespace"),
        # wait_for_subscriber: a video file starts once reward_node listens (loading the
        # model takes seconds); live sources ignore it
        parameters=[
            LaunchConfiguration("camera_params_file"),
            {"source": LaunchConfiguration("camera_source"), "wait_for_subscriber": True},
        ],
        remappings=[("image_raw", LaunchConfiguration("image_topic"))],
        condition=IfCondition(LaunchConfiguration("use_camera_node")),
        output="screen",
    )
    reward = Node(
        package="reward_model_ros",
        executable="reward_node",
        name="reward_classifier",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"model.checkpoint_path": LaunchConfiguration("checkpoint")},
        ],
        remappings=[("image_raw", LaunchConfiguration("image_topic"))],
        on_exit=Shutdown(reason="reward_node exited"),  # no reward, no point in the rest
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "realworld.rviz"])],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*args, camera, reward, rviz])
