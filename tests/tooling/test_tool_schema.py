"""JSON Schema for tools, from signatures and docstrings."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Literal, Optional

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

import rtwidget as rt
from rtwidget import ToolError, build_tool


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(TypedDict):
    x: float
    y: float


@dataclasses.dataclass
class Box:
    width: int
    height: int = 1


class Person(BaseModel):
    name: str
    age: int | None = None


def _uses(_: type) -> Any:
    def g(other: Unresolvable) -> None:  # type: ignore[name-defined]  # noqa: F821
        return None

    return g


def props(fn: Any) -> dict[str, Any]:
    return build_tool(fn).parameters["properties"]


def test_scalars_defaults_and_required() -> None:
    def f(s: str, i: int, x: float, b: bool, n: None = None, d: int = 3) -> str:
        return ""

    schema = build_tool(f).parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["s", "i", "x", "b"]
    p = schema["properties"]
    assert [p[k]["type"] for k in "sixb"] == ["string", "integer", "number", "boolean"]
    assert p["n"]["type"] == "null" and p["d"] == {"type": "integer", "default": 3}


def test_optional_literal_and_enum() -> None:
    def f(a: Optional[str], b: Literal["x", "y"], c: Color = Color.RED) -> None:  # noqa: UP045
        return None

    p = props(f)
    assert {"type": "string"} in p["a"]["anyOf"] and {"type": "null"} in p["a"]["anyOf"]
    assert p["b"]["enum"] == ["x", "y"]
    assert p["c"]["enum"] == ["red", "green"] and p["c"]["default"] == "red"


def test_containers_with_item_types() -> None:
    def f(a: list[int], b: tuple[str, int], c: dict[str, float], d: set[str]) -> None:
        return None

    p = props(f)
    assert p["a"] == {"type": "array", "items": {"type": "integer"}}
    assert p["b"]["prefixItems"] == [{"type": "string"}, {"type": "integer"}]
    assert p["c"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert p["d"]["items"] == {"type": "string"} and p["d"]["uniqueItems"] is True


def test_typeddict_dataclass_and_pydantic_models_are_inlined() -> None:
    def f(p: Point, box: Box, who: Person) -> None:
        return None

    tool = build_tool(f)
    assert "$defs" not in tool.parameters
    p = tool.parameters["properties"]
    assert p["p"]["properties"] == {"x": {"type": "number"}, "y": {"type": "number"}}
    assert p["box"]["required"] == ["width"]
    assert p["who"]["properties"]["name"] == {"type": "string"}
    _, kwargs = tool.parse('{"p": {"x": 1, "y": 2}, "box": {"width": 3}, '
                              '"who": {"name": "Ada"}}')
    assert kwargs["box"] == Box(3, 1) and kwargs["who"] == Person(name="Ada")


def test_google_and_numpy_docstrings_describe_each_parameter() -> None:
    def google(city: str, days: int = 1) -> str:
        """Weather forecast.

        Longer explanation.

        Args:
            city: The city name.
            days: How many days ahead.
        """
        return ""

    def numpy_style(city: str) -> str:
        """Weather forecast.

        Parameters
        ----------
        city : str
            The city name.
        """
        return ""

    tool = build_tool(google)
    assert tool.description == "Weather forecast.\n\nLonger explanation."
    assert tool.parameters["properties"]["city"]["description"] == "The city name."
    assert tool.parameters["properties"]["days"]["description"] == "How many days ahead."
    assert props(numpy_style)["city"]["description"] == "The city name."


class Opaque:
    """Not something JSON Schema can describe."""


def test_unsupported_annotation_fails_at_decoration_naming_the_parameter() -> None:
    class Unresolvable:
        pass

    with pytest.raises(ToolError, match=r"parameter 'other'.*Unresolvable"):
        build_tool(_uses(Unresolvable))
    with pytest.raises(ToolError, match="parameter 'thing'"):
        @rt.tool
        def f(ok: int, thing: Opaque) -> None:
            return None

    assert "f" not in rt.tools
    with pytest.raises(ToolError, match=r"\*args"):
        build_tool(lambda *args: None, name="splat")


def test_strict_forbids_extra_arguments() -> None:
    def f(a: int) -> int:
        return a

    strict = build_tool(f, strict=True)
    assert strict.parameters["additionalProperties"] is False
    with pytest.raises(ToolError, match="Extra inputs"):
        strict.parse('{"a": 1, "b": 2}')
    assert build_tool(f).parse('{"a": 1, "b": 2}') == ([], {"a": 1})


def test_parse_reports_bad_json_and_wrong_types_clearly() -> None:
    def f(a: int, b: list[str]) -> None:
        return None

    tool = build_tool(f)
    with pytest.raises(ToolError, match="not valid JSON"):
        tool.parse("{oops")
    with pytest.raises(ToolError) as info:
        tool.parse('{"a": "many", "b": [1]}')
    assert "a: " in str(info.value) and "b.0: " in str(info.value)
    with pytest.raises(ToolError, match="b: Field required"):
        tool.parse('{"a": 1}')


def test_decorator_bare_and_with_options_and_registry_operations() -> None:
    @rt.tool
    def alpha(x: int) -> int:
        """Alpha."""
        return x

    @rt.tool(name="beta_tool", description="Custom.", timeout=2.5)
    def beta() -> None:
        return None

    assert alpha(2) == 2  # a plain function stays a plain function
    assert rt.tools.names == ["alpha", "beta_tool"]
    assert rt.tools["beta_tool"].timeout == 2.5
    assert rt.tools["beta_tool"].description == "Custom."
    assert list(rt.tools.frame()["name"]) == ["alpha", "beta_tool"]
    rt.tools.unregister(alpha)
    rt.tools.unregister("beta_tool")
    assert len(rt.tools) == 0
    with pytest.raises(KeyError):
        rt.tools.unregister("alpha")


def test_redefining_replaces_the_tool() -> None:
    registry = rt.ToolRegistry()
    changes: list[list[str]] = []
    registry.subscribe(lambda r: changes.append(r.names))

    @registry.register
    def lookup(q: str) -> str:
        """First version."""
        return "v1"

    @registry.register
    def lookup(q: str, limit: int = 5) -> str:  # noqa: F811
        """Second version."""
        return "v2"

    assert len(registry) == 1
    assert registry["lookup"].description == "Second version."
    assert "limit" in registry["lookup"].parameters["properties"]
    assert changes == [["lookup"], ["lookup"]]
