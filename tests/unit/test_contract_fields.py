"""``number_field`` and ``optional_number``: the one rule for a number in the JSON values the gate's
parts pass each other."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resgate.contract.errors import ConfigError
from resgate.contract.fields import number_field, optional_number


@pytest.mark.parametrize("value", [0, 2, 2.0, 0.5, 1])
def test_a_number_within_its_bounds_is_read_as_a_float(value: float) -> None:
    got = number_field({"x": value}, "x", "cfg", lo=0, hi=2)
    assert got == value and isinstance(got, float)


@pytest.mark.parametrize(
    "value", [-0.001, 2.001, math.nan, math.inf, -math.inf, True, False, "1", [1], {"v": 1}]
)
def test_anything_else_is_a_config_error_at_the_field(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"must be a finite number in \[0, 2\]") as e:
        number_field({"x": value}, "x", "cfg.section", lo=0, hi=2)
    assert e.value.where == "cfg.section.x"


def test_without_an_upper_bound_only_the_lower_bound_and_finiteness_are_checked() -> None:
    assert number_field({"x": 1e300}, "x", "w", lo=0) == 1e300
    assert number_field({"x": 0}, "x", "w", lo=0) == 0.0
    with pytest.raises(ConfigError, match=r"must be a finite number >= 0, got -1e-09"):
        number_field({"x": -1e-9}, "x", "w", lo=0)
    with pytest.raises(ConfigError, match="got inf"):
        number_field({"x": math.inf}, "x", "w", lo=0)


def test_an_absent_field_takes_the_default_which_is_checked_too_and_without_one_it_is_required() -> None:
    assert number_field({}, "x", "w", lo=0, hi=1, default=0.5) == 0.5
    with pytest.raises(ConfigError, match="must be a finite number in"):
        number_field({}, "x", "w", lo=0, hi=1, default=2)
    for d in ({}, {"x": None}):
        with pytest.raises(ConfigError, match="is required") as e:
            number_field(d, "x", "w", lo=0, hi=1)
        assert e.value.where == "w.x"


def test_without_bounds_any_finite_number_is_read() -> None:
    assert number_field({"x": -1e300}, "x", "w") == -1e300
    with pytest.raises(ConfigError, match=r"must be a finite number, got nan"):
        number_field({"x": math.nan}, "x", "w")
    with pytest.raises(ConfigError, match=r"must be a finite number <= 1, got 2"):
        number_field({"x": 2}, "x", "w", hi=1)


def test_an_optional_number_is_none_when_absent_and_checked_when_present() -> None:
    assert optional_number({}, "x", "w", lo=0) is None
    assert optional_number({"x": None}, "x", "w", lo=0) is None
    assert optional_number({"x": 0}, "x", "w", lo=0) == 0.0
    with pytest.raises(ConfigError, match=r"must be a finite number >= 0, got -0\.5") as e:
        optional_number({"x": -0.5}, "x", "w", lo=0)
    assert e.value.where == "w.x"
    with pytest.raises(ConfigError, match="got True"):
        optional_number({"x": True}, "x", "w")
