"""The ManiSkill side of reward_model_ros: the only package that imports mani_skill.

Nodes here bridge a ManiSkill 3 task into ROS 2 (camera images, joint states, end-effector
pose, ground-truth success, episode events) so that the rest of the stack cannot tell it
from a real robot. The core must keep working on a robot PC without ManiSkill installed.
"""
