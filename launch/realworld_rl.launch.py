"""SAC on a real Franka with the learned reward: camera, arm_observer, reward_node,
franka_adapter, rl_trainer (and optionally the recorder).

    ros2 launch reward_model_ros realworld_rl.launch.py checkpoint:=/path/to/ckpt task:=insert_peg
    ros2 service call /franka_adapter/enable std_srvs/srv/SetBool "{data: true}"
    # a driver already publishes the camera (RealSense):
    ros2 launch reward_model_ros realworld_rl.launch.py checkpoint:=/path/to/ckpt \\
        use_camera_node:=false image_topic:=/camera/camera/color/image_raw record:=true
    # no robot, no camera: fake_arm draws the workspace (plumbing and demos only)
    ros2 launch reward_model_ros realworld_rl.launch.py fake_arm:=true

arm_observer re-publishes the camera frames it observes on rl/image, with an
ObservationVector (the measured end-effector pose) on state stamped alike; reward_node scores
rl/image, so every observation gets exactly one reward. rl_trainer starts episodes through
franka_adapter's ~/reset and announces them (START, SUCCESS / TIMEOUT / ABORT) itself
(episode_start first_observation). The adapter starts disabled: nothing moves until the
operator calls ~/enable (fake_arm:=true enables it at once). record:=true records rl/image,
state, reward, action and episode/event, one bag per episode.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("reward_model_ros")
    fake = LaunchConfiguration("fake_arm")
    image_topic = LaunchConfiguration("image_topic")
    params = LaunchConfiguration("params_file")
    args = [
        DeclareLaunchArgument(
            "checkpoint",
            default_value="",
            description="reward model checkpoint directory; empty = untrained model (plumbing only)",
        ),
        DeclareLaunchArgument(
            "image_topic",
            default_value="image_raw",
            description="the camera topic, e.g. /camera/camera/color/image_raw",
        ),
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
            "camera_params_file",
            default_value=PathJoinSubstitution([share, "config", "camera.yaml"]),
            description="camera_node parameters",
        ),
        DeclareLaunchArgument(
            "fake_arm",
            default_value="false",
            description="true: fake_arm with its fake camera instead of the robot and camera_node; the "
            "adapter starts enabled",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "realworld_rl.yaml"]),
            description="arm_observer parameters and rl_trainer's robot settings",
        ),
        DeclareLaunchArgument(
            "adapter_params",
            default_value=PathJoinSubstitution([share, "config", "franka_adapter.yaml"]),
            description="franka_adapter parameters on the robot (measure your workspace box first)",
        ),
        DeclareLaunchArgument(
            "trainer_params",
            default_value=PathJoinSubstitution([share, "config", "rl_trainer.yaml"]),
            description="rl_trainer parameters (params_file's rl_trainer section goes on top)",
        ),
        DeclareLaunchArgument(
            "reward_params",
            default_value=PathJoinSubstitution([share, "config", "reward.yaml"]),
            description="reward_node parameters",
        ),
        DeclareLaunchArgument("task", default_value="", description="task name in the EpisodeEvents"),
        DeclareLaunchArgument(
            "output_dir", default_value="runs/rl_robot", description="checkpoints, TensorBoard (resumes)"
        ),
        DeclareLaunchArgument(
            "record", default_value="false", description="record every episode (recorder_node)"
        ),
        DeclareLaunchArgument(
            "save_dir", default_value="runs/rl_episodes", description="where the recorder puts the bags"
        ),
    ]
    camera = Node(
        package="reward_model_ros",
        executable="camera_node",
        name="camera",
        parameters=[
            LaunchConfiguration("camera_params_file"),
            {"source": LaunchConfiguration("camera_source")},
        ],
        remappings=[("image_raw", image_topic)],
        condition=IfCondition(
            PythonExpression(
                [
                    "'",
                    LaunchConfiguration("use_camera_node"),
                    "'.lower() in ('true', '1') and '",
                    fake,
                    "'.lower() not in ('true', '1')",
                ]
            )
        ),
        output="screen",
    )
    fake_arm = Node(
        package="reward_model_ros",
        executable="fake_arm",
        name="fake_arm",
        parameters=[PathJoinSubstitution([share, "config", "fake_arm.yaml"]), {"camera_topic": image_topic}],
        condition=IfCondition(fake),
        output="screen",
    )
    adapter = Node(
        package="reward_model_ros",
        executable="franka_adapter",
        name="franka_adapter",
        parameters=[LaunchConfiguration("adapter_params")],
        condition=UnlessCondition(fake),
        output="screen",
    )
    adapter_on_fake_arm = Node(
        package="reward_model_ros",
        executable="franka_adapter",
        name="franka_adapter",
        # fake_arm.yaml's adapter section: crisp's gripper topic, fake_arm's Trigger recovery
        parameters=[PathJoinSubstitution([share, "config", "fake_arm.yaml"]), {"start_enabled": True}],
        condition=IfCondition(fake),
        output="screen",
    )
    observer = Node(
        package="reward_model_ros",
        executable="arm_observer",
        name="arm_observer",
        parameters=[params, {"image_topic": image_topic}],
        output="screen",
    )
    reward = Node(
        package="reward_model_ros",
        executable="reward_node",
        name="reward_classifier",
        parameters=[
            LaunchConfiguration("reward_params"),
            {
                "model.checkpoint_path": LaunchConfiguration("checkpoint"),
                "reward_mode": "per_step",
                "image_qos": "reliable",
            },
        ],
        # the frames arm_observer observed, not the camera: one reward per observation
        remappings=[("image_raw", "rl/image")],
        on_exit=Shutdown(reason="reward_node exited"),  # no reward, no point in the rest
        output="screen",
    )
    trainer = Node(
        package="reward_model_ros",
        executable="rl_trainer",
        name="rl_trainer",
        parameters=[
            LaunchConfiguration("trainer_params"),
            params,
            {
                "reset_service": "/franka_adapter/reset",
                "episode_start": "first_observation",
                "output_dir": LaunchConfiguration("output_dir"),
                "task": LaunchConfiguration("task"),
            },
        ],
        output="screen",
    )
    recorder = Node(
        package="reward_model_ros",
        executable="recorder_node",
        name="recorder",
        parameters=[
            {
                "save_dir": LaunchConfiguration("save_dir"),
                "topics": ["rl/image", "state", "reward", "action"],
                "image_topics": ["rl/image"],
                "exit_when_done": False,
            }
        ],
        condition=IfCondition(LaunchConfiguration("record")),
        output="screen",
    )
    return LaunchDescription(
        [*args, camera, fake_arm, adapter, adapter_on_fake_arm, observer, reward, trainer, recorder]
    )
