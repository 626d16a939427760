"""Declare a node's parameters from one table: name, default, description, check.

Every node module has a `PARAMETERS` tuple of `Param`s; `declare_parameters` declares them
with descriptions, refuses bad start-up values with a `ParameterError` that names the
parameter, the value and the rule, and installs a set-parameters callback that refuses bad
runtime changes with the same reason. The static launch check reads the same tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# A check returns None when the value is fine, else the reason it is not.
Check = Callable[[Any], "str | None"]


class ParameterError(ValueError):
    """A parameter value a node cannot work with."""


@dataclass(frozen=True)
class Param:
    name: str
    """the parameter's name, dotted for nested groups"""
    default: Any
    """the default value; its type is the parameter's type"""
    description: str
    """one line for `ros2 param describe` and the README's configuration reference"""
    check: Check | None = None
    """validation; None accepts every value of the right type"""
    read_only: bool = False
    """true for parameters that only take effect at start-up"""
    array_type: str = ""
    """for an empty-list default, the element type: string, integer, double or bool"""

    def validate(self, value: Any) -> str | None:
        if self.check is None:
            return None
        return self.check(value)


# --- checks ------------------------------------------------------------------------------
def in_range(lo: float, hi: float) -> Check:
    return lambda v: None if lo <= v <= hi else f"must be in [{lo}, {hi}]"


def positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def finite(v: Any) -> str | None:
    import math

    return None if isinstance(v, int | float) and math.isfinite(v) else "must be a finite number"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def one_of(*allowed: Any) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(map(repr, allowed))}"


def at_least(lo: float) -> Check:
    return lambda v: None if v >= lo else f"must be >= {lo}"


def non_empty(v: Any) -> str | None:
    return None if len(v) > 0 else "must not be empty"


def topic_name(v: Any) -> str | None:
    if not v or any(c.isspace() for c in v) or "//" in v or v.endswith("/"):
        return f"{v!r} is not a valid ROS topic name"
    return None


def optional_topic(v: Any) -> str | None:
    """A topic name, or empty for none."""
    return None if v == "" else topic_name(v)


def device_name(v: Any) -> str | None:
    import re

    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(v)) else "must be auto, cpu, cuda or cuda:N"


def all_of(*checks: Check) -> Check:
    def check(v: Any) -> str | None:
        for c in checks:
            reason = c(v)
            if reason:
                return reason
        return None

    return check


# --- rclpy glue ----------------------------------------------------------------------------
def declare_parameters(
    node: Any, params: Sequence[Param], on_change: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Declare `params` on an rclpy node and return their validated values by name.

    `on_change(values)` is called with the accepted new values after a runtime change
    passed every check (this is the node's only set-parameters callback, so nothing else
    can still reject it).

    :raises ParameterError: for a start-up value that fails its check; the message names
        the node, the parameter, the value and the rule.
    """
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

    by_name = {p.name: p for p in params}
    from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
    from rclpy.parameter import Parameter

    array_types = {
        "string": Parameter.Type.STRING_ARRAY,
        "integer": Parameter.Type.INTEGER_ARRAY,
        "double": Parameter.Type.DOUBLE_ARRAY,
        "bool": Parameter.Type.BOOL_ARRAY,
    }
    given_empty = _coerce_overrides(node, params)
    values: dict[str, Any] = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if isinstance(p.default, list) and not p.default:
            # rclpy cannot infer an element type from []: declare the type, default to [].
            node.declare_parameter(p.name, array_types[p.array_type], descriptor)
            try:
                values[p.name] = _plain(node.get_parameter(p.name).value)
            except ParameterUninitializedException:
                values[p.name] = []
        else:
            try:
                node.declare_parameter(p.name, p.default, descriptor)
            except InvalidParameterTypeException as exc:
                raise ParameterError(
                    f"{node.get_name()}: parameter {p.name} must be a {type(p.default).__name__} "
                    f"like its default {p.default!r} ({exc})"
                ) from exc
            values[p.name] = _plain(node.get_parameter(p.name).value)
    values |= {key: [] for key in given_empty}  # `name:=[]`: checked as given
    for name, value in values.items():
        reason = by_name[name].validate(value)
        if reason:
            raise ParameterError(
                f"{node.get_name()}: parameter {name}={value!r} {reason}. ({by_name[name].description})"
            )

    def on_set(changes: Iterable[Any]) -> Any:
        for change in changes:
            spec = by_name.get(change.name)
            if spec is None:
                continue
            reason = spec.validate(change.value)
            if reason:
                return SetParametersResult(
                    successful=False, reason=f"{change.name}={change.value!r} {reason}"
                )
        if on_change is not None:
            on_change({c.name: c.value for c in changes if c.name in by_name})
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def _coerce_overrides(node: Any, params: Sequence[Param]) -> set[str]:
    """Check and type the `-p` / parameter-file values before declaring.

    - A name the node does not declare is refused, naming the close matches: a misspelt
      `reward_treshold:=0.9` must not leave the node running at another threshold.
    - Values are given the declared type where nothing is lost: `source:=0` arrives as an
      integer for a string parameter, `rate:=30` as an integer for a float one,
      `model.normalize:=true` as a bool for a string one, `image_topics:=[]` untyped; rclpy
      would refuse each with a traceback. (rclpy keeps these values in a private dict.)

    :raises ParameterError: for undeclared names.
    """
    import difflib

    from rclpy.parameter import Parameter

    overrides = getattr(node, "_parameter_overrides", None)
    if not isinstance(overrides, dict):
        return set()
    declared = parameter_names(params)
    unknown = sorted(n for n in overrides if n not in declared and not n.startswith("qos_overrides."))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(declared), n=3, cutoff=0.6)
            hints.append(f"{name}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        raise ParameterError(
            f"{node.get_name()}: unknown parameter(s) {', '.join(hints)}; this node's parameters are "
            f"listed by `--help`. Fix the name in the parameter file or -p"
        )
    empty: set[str] = set()
    for spec in params:
        given = overrides.get(spec.name)
        if given is None:
            continue
        if given.type_ == Parameter.Type.NOT_SET and isinstance(spec.default, list):
            # rclpy cannot type an empty list (it becomes a byte array): drop the override and
            # let the check see the [] that was asked for
            del overrides[spec.name]
            empty.add(spec.name)
        elif isinstance(spec.default, str) and isinstance(given.value, bool):
            overrides[spec.name] = Parameter(spec.name, value=str(given.value).lower())
        elif isinstance(given.value, bool):
            continue
        elif isinstance(spec.default, str) and isinstance(given.value, int | float):
            overrides[spec.name] = Parameter(spec.name, value=str(given.value))
        elif isinstance(spec.default, float) and isinstance(given.value, int):
            overrides[spec.name] = Parameter(spec.name, value=float(given.value))
    return empty


def _element_type(default: list) -> str:
    first = default[0]
    if isinstance(first, bool):
        return "bool"
    return {str: "string", int: "integer", float: "double"}.get(type(first), "string")


def _plain(value: Any) -> Any:
    """rclpy gives integer/double arrays as array.array: make them lists."""
    import array

    return list(value) if isinstance(value, (array.array, tuple)) else value


def parameter_names(params: Sequence[Param]) -> set[str]:
    """Names a node declares (plus use_sim_time, which every rclpy node has)."""
    return {p.name for p in params} | {"use_sim_time"}
