"""Recording labelled episodes on a real robot: camera, labeller, recorder.

ros2 launch reward_model_ros collect_realworld.launch.py [labeller:=pose|none]
    [use_camera_node:=true] [camera_source:=0] [image_topic:=image_raw]
    [pose_topic:=ee_pose] [save_dir:=runs/episodes] [target_success:=0] [target_failure:=0]

labeller:=pose starts pose_success_node: success labels while the end-effector holds the
target pose (config/collect_realworld.yaml), and a SUCCESS event that ends the episode.
The keyboard labeller needs a terminal of its own, so it is not started here: run
`ros2 run reward_model_ros label_keyboard_node` in another terminal (config:
config/label_keyboard.yaml; n starts an episode, space marks success frames, enter/f end it).
Episodes can also be started and stopped by hand through the recorder's services.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("reward_model_ros")
    config = LaunchConfiguration("params_file")
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "collect_realworld.yaml"]),
            description="parameters of the camera, the labellers and the recorder",
        ),
        DeclareLaunchArgument("labeller", default_value="pose", description="pose | none"),
        DeclareLaunchArgument(
            "use_camera_node",
            default_value="true",
            description="false: a driver already publishes image_topic",
        ),
        DeclareLaunchArgument("camera_source", default_value="0", description="camera_node source"),
        DeclareLaunchArgument("image_topic", default_value="image_raw", description="the camera topic"),
        DeclareLaunchArgument("pose_topic", default_value="ee_pose", description="end-effector PoseStamped"),
        DeclareLaunchArgument("save_dir", default_value="runs/episodes", description="where the bags go"),
        DeclareLaunchArgument("target_success", default_value="0", description="0 = no limit"),
        DeclareLaunchArgument("target_failure", default_value="0", description="0 = no limit"),
    ]
    camera = Node(
        package="reward_model_ros",
        executable="camera_node",
        name="camera",
        parameters=[config, {"source": LaunchConfiguration("camera_source")}],
        remappings=[("image_raw", LaunchConfiguration("image_topic"))],
        condition=IfCondition(LaunchConfiguration("use_camera_node")),
        output="screen",
    )
    pose = Node(
        package="reward_model_ros",
        executable="pose_success_node",
        name="pose_success",
        parameters=[config],
        remappings=[("ee_pose", LaunchConfiguration("pose_topic"))],
        condition=LaunchConfigurationEquals("labeller", "pose"),
        output="screen",
    )
    recorder = Node(
        package="reward_model_ros",
        executable="recorder_node",
        name="recorder",
        parameters=[
            config,
            {
                "save_dir": LaunchConfiguration("save_dir"),
                "target_success": LaunchConfiguration("target_success"),
                "target_failure": LaunchConfiguration("target_failure"),
            },
        ],
        remappings=[
            ("image_raw", LaunchConfiguration("image_topic")),
            ("ee_pose", LaunchConfiguration("pose_topic")),
        ],
        on_exit=Shutdown(reason="the recorder finished or failed"),
        output="screen",
    )
    return LaunchDescription([*args, camera, pose, recorder])
