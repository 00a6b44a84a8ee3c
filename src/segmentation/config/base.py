"""The base of every configuration section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base for every config section: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
