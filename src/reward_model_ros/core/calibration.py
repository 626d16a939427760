"""Camera calibration files in the ROS camera_calibration YAML format (no ROS import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the field."""


@dataclass
class CameraCalibration:
    width: int
    height: int
    camera_name: str = ""
    distortion_model: str = "plumb_bob"
    k: list[float] = field(default_factory=lambda: [0.0] * 9)
    """3x3 intrinsic matrix, row-major"""
    d: list[float] = field(default_factory=list)
    """distortion coefficients"""
    r: list[float] = field(default_factory=lambda: [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
    """3x3 rectification matrix, row-major"""
    p: list[float] = field(default_factory=lambda: [0.0] * 12)
    """3x4 projection matrix, row-major"""


def _matrix(data: dict, key: str, rows: int, cols: int, path: Path) -> list[float]:
    if key not in data:
        raise CalibrationError(f"{path}: missing field {key!r}")
    entry = data[key]
    values = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(values, list) or len(values) != rows * cols:
        raise CalibrationError(f"{path}: {key}.data must be a list of {rows * cols} numbers")
    return [float(v) for v in values]


def load_calibration(path: str | Path) -> CameraCalibration:
    """Read a camera_calibration YAML file (as written by `ros2 run camera_calibration ...`).

    :raises CalibrationError: for a missing file, invalid YAML or a missing/malformed field.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CalibrationError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a mapping with image_width, camera_matrix, ...")
    for key in ("image_width", "image_height"):
        if not isinstance(data.get(key), int):
            raise CalibrationError(f"{path}: missing or non-integer field {key!r}")
    dist = data.get("distortion_coefficients", {}) or {}
    d = [float(v) for v in (dist.get("data") or [])]
    return CameraCalibration(
        width=data["image_width"],
        height=data["image_height"],
        camera_name=str(data.get("camera_name", "")),
        distortion_model=str(data.get("distortion_model", "plumb_bob")),
        k=_matrix(data, "camera_matrix", 3, 3, path),
        d=d,
        r=_matrix(data, "rectification_matrix", 3, 3, path)
        if "rectification_matrix" in data
        else CameraCalibration(0, 0).r,
        p=_matrix(data, "projection_matrix", 3, 4, path)
        if "projection_matrix" in data
        else CameraCalibration(0, 0).p,
    )
