"""Models are data: each known model is a JSON file in ``batchgen/models/`` holding RunComfy's
input schema (as ``GET /v1/models/{id}`` serves it), its per-second prices, and the rules its
page states in prose (shot durations add up, fields that exclude each other).

Adding a model is adding a file. The schema dialect is RunComfy's: JSON-Schema-like, with
``"type": "float"`` meaning a number and ``format: image_uri`` marking image inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: its input schema, prices and extra rules."""

    id: str
    display_name: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    price_no_audio: float
    price_audio: float
    typical_generation_seconds: float
    not_together: tuple[tuple[str, str], ...]
    shots_sum_to_duration: bool
    min_side: int
    max_aspect: float
    max_file_bytes: int
    max_inline_bytes: int
    formats: frozenset[str]

    def price_per_second(self, audio: bool) -> float:
        """USD per second of video."""
        return self.price_audio if audio else self.price_no_audio

    def image_fields(self) -> tuple[str, ...]:
        """Top-level fields that take one image."""
        return tuple(
            name
            for name, prop in self.properties.items()
            if prop.get("format") == "image_uri" or name.endswith("image_url")
        )


def _spec(doc: dict[str, Any]) -> ModelSpec:
    schema = doc["input_schema"]
    rules = doc.get("rules", {})
    images = doc.get("image_rules", {})
    prices = doc["price_per_second"]
    return ModelSpec(
        id=doc["model_id"],
        display_name=doc.get("display_name", doc["model_id"]),
        properties=schema["properties"],
        required=tuple(schema.get("required", ())),
        price_no_audio=float(prices["no_audio"]),
        price_audio=float(prices["audio"]),
        typical_generation_seconds=float(doc.get("typical_generation_seconds", 90)),
        not_together=tuple((str(a), str(b)) for a, b in rules.get("not_together", ())),
        shots_sum_to_duration=bool(rules.get("shots_sum_to_duration", False)),
        min_side=int(images.get("min_side", 300)),
        max_aspect=float(images.get("max_aspect", 2.5)),
        max_file_bytes=int(float(images.get("max_file_mb", 10)) * 1024 * 1024),
        max_inline_bytes=int(float(images.get("max_inline_mib", 6)) * 1024 * 1024),
        formats=frozenset(images.get("formats", ("JPEG", "PNG", "BMP", "WEBP"))),
    )


@cache
def _models() -> dict[str, ModelSpec]:
    found: dict[str, ModelSpec] = {}
    for entry in resources.files("batchgen").joinpath("models").iterdir():
        if entry.name.endswith(".json"):
            spec = _spec(json.loads(entry.read_text(encoding="utf-8")))
            found[spec.id] = spec
    return found


def known_models() -> list[str]:
    """Ids of every model batchgen knows, sorted."""
    return sorted(_models())


def get_model(model_id: str) -> ModelSpec | None:
    """The spec of ``model_id``, or None when batchgen does not know it."""
    return _models().get(model_id.strip().strip("/"))
