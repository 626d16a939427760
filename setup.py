"""ament_python package reward_model_ros (built by colcon on a ROS 2 install, or pip in the venv)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "reward_model_ros"

# Node executables: `ros2 run reward_model_ros <name>` and the names launch files use.
NODES = {
    "interface_echo_node": "reward_model_ros.nodes.interface_echo:main",
    "reward_node": "reward_model_ros.nodes.reward:main",
    "camera_node": "reward_model_ros.nodes.camera:main",
    "maniskill_bridge": "reward_model_sim.bridge:main",
    "recorder_node": "reward_model_ros.nodes.recorder:main",
    "pose_success_node": "reward_model_ros.nodes.pose_success:main",
    "label_keyboard_node": "reward_model_ros.nodes.label_keyboard:main",
    "franka_adapter": "reward_model_ros.nodes.franka_adapter:main",
    "fake_arm": "reward_model_ros.nodes.fake_arm:main",
    "arm_observer": "reward_model_ros.nodes.arm_observer:main",
    "rl_trainer": "reward_model_ros.nodes.rl_trainer:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    # derived, never listed by hand: a new subpackage cannot be left out of a colcon install
    packages=find_packages("src", include=[PACKAGE, f"{PACKAGE}.*"])
    + find_packages("sim", include=["reward_model_sim", "reward_model_sim.*"]),
    package_dir={"": "src", "reward_model_sim": "sim/reward_model_sim"},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="reward_model_ros maintainers",
    maintainer_email="maintainers@reward-model-ros.invalid",
    description="Learned, image-based success rewards for robot RL on ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["reward-model = reward_model_ros.cli:main"],
    },
)
