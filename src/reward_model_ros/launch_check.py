"""Static check of launch files, without the `launch` package.

For every `Node(...)` a launch file creates, checks that the package exists, that the
executable is one the package installs, that each parameter file it names exists (and is
installed by setup.py), that every parameter in those files and in inline dicts is one the
node declares (its module's `PARAMETERS` table), and that every section of a parameter
file applies to some node (a misspelt node name makes ROS ignore the section silently).

It reads the launch file's syntax tree and resolves the usual spellings: string literals,
variables, `os.path.join`, `PathJoinSubstitution`, `FindPackageShare` /
`get_package_share_directory`, and `LaunchConfiguration` with the default of its
`DeclareLaunchArgument`. Anything it cannot resolve is reported, not guessed.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SHARE = "{share:%s}"


@dataclass
class Unresolved:
    source: str

    def __str__(self) -> str:
        return f"<unresolved: {self.source}>"


@dataclass
class NodeUse:
    launch_file: Path
    line: int
    package: str | Unresolved | None
    executable: str | Unresolved | None
    name: str | Unresolved | None
    namespace: object = None
    param_files: list[str | Unresolved] = field(default_factory=list)
    inline_params: dict[str, object] = field(default_factory=dict)
    arguments: list[object] = field(default_factory=list)


@dataclass
class PackageInfo:
    share_dir: Path
    """where `{share:pkg}/...` paths resolve to (the source tree for our packages)"""
    executables: dict[str, str]
    """executable name -> 'module:function'"""
    installed_globs: list[str]
    """paths relative to share_dir that the package installs (setup.py data_files globs)"""


class _Evaluator:
    """Resolve the value of an expression in a launch file, as far as statically possible."""

    def __init__(self, tree: ast.Module, source: str) -> None:
        self.source = source
        self.assignments: dict[str, ast.expr] = {}
        self.arg_defaults: dict[str, ast.expr] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    self.assignments[target.id] = node.value
            if isinstance(node, ast.Call) and _call_name(node) == "DeclareLaunchArgument":
                name = self.eval(node.args[0]) if node.args else _kwarg(node, "name")
                default = _kwarg_node(node, "default_value")
                if isinstance(name, str) and default is not None:
                    self.arg_defaults[name] = default

    def eval(self, node: ast.expr | None, depth: int = 0) -> object:
        if node is None:
            return None
        if depth > 20:
            return Unresolved(ast.get_source_segment(self.source, node) or "?")
        ev = lambda n: self.eval(n, depth + 1)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.assignments:
            return ev(self.assignments[node.id])
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            return _join([ev(node.left), ev(node.right)])
        if isinstance(node, ast.Call):
            name = _call_name(node)
            args = [ev(a) for a in node.args]
            if name in ("FindPackageShare", "get_package_share_directory") and args:
                pkg = args[0]
                return SHARE % pkg if isinstance(pkg, str) else Unresolved(str(pkg))
            if name in ("join", "Path") and args:
                return _join(args)
            if name == "PathJoinSubstitution" and args and isinstance(args[0], list):
                return _join(args[0])
            if name == "LaunchConfiguration" and args and args[0] in self.arg_defaults:
                return ev(self.arg_defaults[args[0]])
        return Unresolved(ast.get_source_segment(self.source, node) or ast.dump(node))


def _join(parts: list[object]) -> str | Unresolved:
    for p in parts:
        if not isinstance(p, str):
            return p if isinstance(p, Unresolved) else Unresolved(repr(p))
    return "/".join(p.rstrip("/") for p in parts)


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _kwarg_node(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _kwarg(call: ast.Call, name: str) -> object:
    node = _kwarg_node(call, name)
    return node.value if isinstance(node, ast.Constant) else None


def parse_launch_file(path: Path) -> list[NodeUse]:
    """Every `Node(...)` in a launch file, with what can be resolved of its arguments."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    ev = _Evaluator(tree, source)
    uses = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _call_name(node) == "Node"):
            continue
        use = NodeUse(
            launch_file=path,
            line=node.lineno,
            package=ev.eval(_kwarg_node(node, "package")),
            executable=ev.eval(_kwarg_node(node, "executable")),
            name=ev.eval(_kwarg_node(node, "name")),
            namespace=ev.eval(_kwarg_node(node, "namespace")),
        )
        arguments = ev.eval(_kwarg_node(node, "arguments"))
        use.arguments = arguments if isinstance(arguments, list) else []
        params = ev.eval(_kwarg_node(node, "parameters"))
        for entry in params if isinstance(params, list) else ([] if params is None else [params]):
            if isinstance(entry, dict):
                use.inline_params.update(_flatten(entry))
            else:
                use.param_files.append(entry)
        uses.append(use)
    return uses


def _flatten(params: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _section_applies(section: str, node_name: str) -> bool:
    """Whether a parameter-file key names this node (in some namespace)."""
    section = section.strip()
    if section in ("/**", "**"):
        return True
    return section.lstrip("/").split("/")[-1] == node_name or fnmatch.fnmatch(node_name, section.lstrip("/"))


def _root_only(section: str) -> bool:
    """`name` or `/name`: ROS applies it to a node in the root namespace only."""
    return "/" not in section.strip().lstrip("/") and "*" not in section


def read_setup_py(root: Path) -> tuple[dict[str, str], list[str]]:
    """(node executable -> target, data_files globs) from setup.py's NODES table and glob() calls."""
    tree = ast.parse((root / "setup.py").read_text())
    executables: dict[str, str] = {}
    globs: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "NODES" for t in node.targets
        ):
            executables.update(ast.literal_eval(node.value))
        if isinstance(node, ast.Call) and _call_name(node) == "glob" and node.args:
            globs.append(ast.literal_eval(node.args[0]))
    return executables, globs


def node_parameters(target: str) -> tuple[str | None, set[str] | None, str]:
    """(default node name, declared parameter names, problem) of a console-script target."""
    module_name = target.split(":")[0]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import error is itself a finding
        return None, None, f"cannot import {module_name}: {exc}"
    table = getattr(module, "PARAMETERS", None)
    if table is None:
        return None, None, f"{module_name} has no PARAMETERS table"
    names = {p.name for p in table} | {"use_sim_time"}
    return getattr(module, "NODE_NAME", None), names, ""


# Packages of a ROS 2 install that launch files may start (not part of this repository):
# their executables and parameters are not checked here, only the files we pass them.
EXTERNAL_PACKAGES = {"rviz2"}


def check_launch_file(path: Path, packages: dict[str, PackageInfo]) -> list[str]:
    """Problems found in one launch file (empty when it is fine)."""
    problems: list[str] = []
    uses = parse_launch_file(path)
    file_users: dict[str, list[tuple[str, set[str], object]]] = {}

    for use in uses:
        where = f"{path.name}:{use.line}"
        for arg in use.arguments:
            if isinstance(arg, str) and arg.startswith("{share:"):
                resolved = _resolve_share_path(arg, packages)
                if isinstance(resolved, str):
                    problems.append(f"{where}: argument {resolved}")
        if not isinstance(use.package, str):
            problems.append(f"{where}: package cannot be resolved statically ({use.package})")
            continue
        if use.package in EXTERNAL_PACKAGES:
            continue
        pkg = packages.get(use.package)
        if pkg is None:
            problems.append(
                f"{where}: package {use.package!r} is unknown (known: {', '.join(sorted(packages))})"
            )
            continue
        if not isinstance(use.executable, str):
            problems.append(f"{where}: executable cannot be resolved statically ({use.executable})")
            continue
        target = pkg.executables.get(use.executable)
        if target is None:
            problems.append(
                f"{where}: package {use.package} has no executable {use.executable!r} "
                f"(it has: {', '.join(sorted(pkg.executables)) or 'none'})"
            )
            continue
        default_name, declared, problem = node_parameters(target)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        node_name = use.name if isinstance(use.name, str) else default_name
        for name in sorted(set(use.inline_params) - declared):
            problems.append(f"{where}: node {node_name} does not declare parameter {name!r}")
        for pfile in use.param_files:
            resolved = _resolve_share_path(pfile, packages)
            if isinstance(resolved, str):
                problems.append(f"{where}: parameter file {resolved}")
                continue
            file_users.setdefault(str(resolved), []).append((node_name, declared, use.namespace))

    for pfile, users in file_users.items():
        problems += _check_param_file(Path(pfile), users, path.name)
    return problems


def _resolve_share_path(value: object, packages: dict[str, PackageInfo]) -> Path | str:
    """The source path of `{share:pkg}/rel`, or a string saying what is wrong with it."""
    if not isinstance(value, str):
        return f"cannot be resolved statically ({value})"
    if not value.startswith("{share:"):
        return f"{value!r} is not inside a package share directory (use FindPackageShare)"
    pkg_name, _, rel = value[len("{share:") :].partition("}")
    rel = rel.lstrip("/")
    pkg = packages.get(pkg_name)
    if pkg is None:
        return f"{value!r} names unknown package {pkg_name!r}"
    source = pkg.share_dir / rel
    if not source.is_file():
        return f"{rel} does not exist in package {pkg_name} (looked at {source})"
    if pkg.installed_globs and not any(fnmatch.fnmatch(rel, g) for g in pkg.installed_globs):
        return f"{rel} exists but setup.py does not install it (data_files globs: {pkg.installed_globs})"
    return source


def _check_param_file(path: Path, users: list[tuple[str, set[str], object]], launch_name: str) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        return [f"{launch_name}: {path.name} is not valid YAML: {exc}"]
    problems = []
    for section, body in data.items():
        where = f"{launch_name}: {path.name} [{section}]"
        if not isinstance(body, dict) or "ros__parameters" not in body:
            problems.append(f"{where}: has no ros__parameters")
            continue
        targets = [(n, d, ns) for n, d, ns in users if n and _section_applies(str(section), n)]
        if not targets:
            names = ", ".join(sorted({n for n, _, _ in users if n}))
            problems.append(f"{where}: applies to no node started with this file (nodes: {names})")
            continue
        params = _flatten(body["ros__parameters"] or {})
        for node_name, declared, namespace in targets:
            if _root_only(str(section)) and namespace not in (None, ""):
                problems.append(
                    f"{where}: applies only to /{node_name} in the root namespace, but the node is started "
                    f"with namespace {namespace}; ROS would ignore the section there: write '/**/{node_name}'"
                )
            for name in sorted(set(params) - declared):
                problems.append(f"{where}: node {node_name} does not declare parameter {name!r}")
    return problems


def project_packages(root: Path) -> dict[str, PackageInfo]:
    """The packages of this repository, as the launch files see them."""
    executables, globs = read_setup_py(root)
    return {
        "reward_model_ros": PackageInfo(root, executables, globs),
        "reward_msgs": PackageInfo(root / "src" / "reward_msgs", {}, []),
    }
