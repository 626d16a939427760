"""Where the package's data files (config/, launch/) are, in a source checkout or an install."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "reward_model_ros"


def _source_root() -> Path | None:
    """The repository root when running from a source checkout (pip -e or colcon --symlink-install)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "package.xml").is_file() and (root / "config").is_dir():
        return root
    return None


def share_dir() -> Path:
    """The directory holding this package's `config/` and `launch/`.

    A source checkout wins (so edits to config files take effect without reinstalling);
    otherwise the ament index of a colcon install is used.

    :raises FileNotFoundError: when neither is found.
    """
    root = _source_root()
    if root is not None:
        return root
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # PackageNotFoundError, or ament_index_python missing
        raise FileNotFoundError(
            f"cannot find the share directory of {PACKAGE}: not running from a source "
            f"checkout and the ament index does not know the package ({exc}). "
            "Source the workspace (`source install/setup.bash`) or use the project's venv."
        ) from exc


def config_file(name: str) -> Path:
    """Path of `config/<name>`; raises FileNotFoundError naming the file when missing."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file {name!r} not found at {path}")
    return path
