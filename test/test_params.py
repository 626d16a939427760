"""The parameter table helpers (no ROS needed for the checks themselves)."""

from __future__ import annotations

import pytest

from reward_model_ros.nodes.params import (
    Param,
    all_of,
    in_range,
    non_empty,
    non_negative,
    one_of,
    parameter_names,
    positive,
    topic_name,
)


def test_checks_accept_and_refuse():
    assert in_range(0, 1)(0.5) is None and in_range(0, 1)(1.5) == "must be in [0, 1]"
    assert positive(1) is None and positive(0) == "must be > 0"
    assert non_negative(0) is None and non_negative(-1)
    assert one_of("mean", "min")("min") is None
    assert one_of("mean", "min")("avg") == "must be one of 'mean', 'min'"
    assert non_empty(["a"]) is None and non_empty([])
    assert topic_name("camera/image_raw") is None
    for bad in ("", "a b", "a//b", "a/"):
        assert topic_name(bad)
    both = all_of(positive, in_range(0, 10))
    assert both(5) is None and both(0) == "must be > 0" and both(11) == "must be in [0, 10]"


def test_param_validate_and_names():
    p = Param("rate", 30.0, "frames per second", positive)
    assert p.validate(10.0) is None and p.validate(-1.0) == "must be > 0"
    assert Param("free", "x", "no check").validate("anything") is None
    assert parameter_names([p]) == {"rate", "use_sim_time"}


@pytest.mark.parametrize(
    ("native", "int8", "precision", "optimize", "want"),
    [
        (True, False, "auto", "auto", ("bf16", "freeze")),
        (False, False, "auto", "auto", ("fp32", "none")),
        (True, False, "fp32", "auto", ("fp32", "none")),  # an explicit precision keeps its eager graph
        (True, False, "auto", "none", ("bf16", "none")),
        (False, False, "bf16", "freeze", ("bf16", "freeze")),  # explicit settings are taken as given
        (True, True, "auto", "auto", ("int8", "freeze")),  # a checkpoint with int8 calibration frames
        (True, True, "bf16", "auto", ("bf16", "freeze")),
        (False, True, "int8", "auto", ("int8", "freeze")),  # int8 is always a frozen graph
    ],
)
def test_reward_node_resolves_auto_precision_and_graph(monkeypatch, native, int8, precision, optimize, want):
    import reward_model_ros.core.model as model_module
    from reward_model_ros.nodes import reward

    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: native)
    monkeypatch.setattr(model_module, "cpu_has_vnni", lambda: True)
    p = {d.name: d.default for d in reward.PARAMETERS}
    p.update({"model.precision": precision, "model.optimize": optimize})
    got = reward._model_overrides(p)  # the node passes auto on: load_checkpoint resolves it
    assert (got["precision"], got["optimize"]) == (precision, optimize)
    resolved = model_module.resolve_inference(precision, optimize, "cpu", int8_ready=int8)
    assert resolved == want
