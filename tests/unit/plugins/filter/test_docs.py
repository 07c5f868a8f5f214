"""Every filter has its documentation (plugins/filter/<name>.yml), and it agrees with the code it documents."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.k8router.edge.plugins.filter import calico_systemd, router
from ansible_collections.k8router.edge.plugins.plugin_utils._calico_systemd import calico_resources
from ansible_collections.k8router.edge.plugins.plugin_utils._converge_params import converge_params

FILTER_DIR = Path(router.__file__).parent
FILTERS: dict[str, Callable[..., Any]] = {**router.FilterModule().filters(), **calico_systemd.FilterModule().filters()}
# Filters whose wrapper passes **kwargs on: their arguments are those of the function wrapped.
WRAPPED: dict[str, Callable[..., Any]] = {"calico_resources": calico_resources, "converge_params": converge_params}


def _doc(name: str) -> dict[str, Any]:
    path = FILTER_DIR / f"{name}.yml"
    assert path.is_file(), f"filter {name}: no {path.name} next to its Python file"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _arguments(name: str) -> list[inspect.Parameter]:
    """The filter's arguments after its input, as Python sees them (``*parts``: the input is its first)."""
    params = list(inspect.signature(WRAPPED.get(name, FILTERS[name])).parameters.values())
    return params if params[0].kind is inspect.Parameter.VAR_POSITIONAL else params[1:]


def test_every_documentation_file_documents_an_exported_filter() -> None:
    assert sorted(p.stem for p in FILTER_DIR.glob("*.yml")) == sorted(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_documentation_names_the_filter_and_shows_it_used(name: str) -> None:
    doc = _doc(name)
    assert doc["DOCUMENTATION"]["name"] == name
    assert doc["DOCUMENTATION"]["version_added"] == "0.1.0"
    assert f"k8router.edge.{name}" in doc["EXAMPLES"]
    assert "_value" in doc["RETURN"]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_the_documented_arguments_are_the_code_s(name: str) -> None:
    documentation = _doc(name)["DOCUMENTATION"]
    options: dict[str, dict[str, Any]] = documentation["options"]
    assert options["_input"].get("required") is True
    positional = [p.strip() for p in documentation["positional"].split(",")]
    assert positional[0] == "_input"
    assert set(positional) <= set(options), f"{name}: positional names undocumented options"
    documented = {}
    for param in _arguments(name):
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            documented[f"_{param.name}"] = param  # *parts: documented as _parts
        elif param.kind is not inspect.Parameter.VAR_KEYWORD:
            documented[param.name] = param
    assert sorted(options) == sorted(["_input", *documented]), f"{name}: documented options differ from the code's"
    for option, param in documented.items():
        spec = options[option]
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            assert not spec.get("required")
            continue
        if param.default is inspect.Parameter.empty:
            assert spec.get("required") is True, f"{name}: {option} has no default in the code, so it is required"
            continue
        assert not spec.get("required"), f"{name}: {option} has a default in the code"
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        assert spec.get("default") == default, f"{name}: {option} defaults to {default!r} in the code"
