"""The pydantic models of the ffc spec: the one source of truth for validation, JSON Schema, docs and defaults."""

from .rules import Problem, check
from .spec import SPEC_VERSION, Spec, json_schema

__all__ = ["SPEC_VERSION", "Problem", "Spec", "check", "json_schema"]
