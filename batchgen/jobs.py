"""Validated jobs: manifest rows checked against the model's input schema, all at once.

``load_jobs`` reads a manifest (``manifest.py``), applies ``defaults``, coerces spreadsheet text
to the schema's types, checks every field (type, range, length, enum, images, the shot-duration
sum, fields that exclude each other, unknown fields with a "did you mean"), derives stable ids,
and either returns every job or raises one ``ManifestError`` holding every problem found.

Local images are checked once per file and sent as ``data:`` URIs (``payload``); ``Job.inputs``
keeps the path the user wrote, never base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .catalog import ModelSpec, get_model, known_models
from .config import DEFAULT_MODEL
from .errors import ManifestError, ManifestIssue
from .manifest import RawManifest, RawRow, read_manifest, suggest

ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on", "wahr", "ja", "x"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off", "falsch", "nein"})
ELEMENT_KEYS = ("frontal_image_url", "reference_image_urls", "video_url")
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp"}


@dataclass(frozen=True, slots=True)
class Job:
    """One video to make, validated, in manifest order."""

    id: str  # unique, filename-safe [A-Za-z0-9._-]{1,100}
    position: int  # 0-based manifest order
    row: str  # as the user sees it: "row 7" (sheet, header = row 1) or "line 12" (YAML)
    model: str
    inputs: dict[str, Any]  # inputs with defaults applied; local images as the user wrote them
    local_images: dict[str, Path]  # "start_image_url", "elements.0.frontal_image_url", ... -> file
    fingerprint: str  # sha256 hex over model + inputs + local image contents
    seconds: int  # video seconds requested (duration)
    estimated_cost: float  # USD, price per second x seconds


@dataclass(frozen=True, slots=True)
class SheetSettings:
    """Batch-wide settings a YAML manifest may carry."""

    on_uncertain: str = "report"  # "report" or "resubmit"
    price_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class JobSheet:
    """A whole validated manifest."""

    source: Path
    model: str
    jobs: list[Job]
    settings: SheetSettings = SheetSettings()
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LocalImage:
    """A checked local image file."""

    path: Path
    sha256: str
    mime: str
    size: int


class _Problems:
    """Collects the issues of one row."""

    def __init__(self, row: RawRow, sink: list[ManifestIssue]) -> None:
        self.row = row
        self.sink = sink
        self.job_id = ""
        self.count = 0

    def add(self, field_name: str, message: str) -> None:
        self.count += 1
        self.sink.append(
            ManifestIssue(self.row.file, self.row.row, self.job_id, field_name, message)
        )

    def add_column(self, column: str, message: str) -> None:
        """A bad sheet column: reported once, at the header (row 1), not on every row."""
        self.count += 1
        issue = ManifestIssue(self.row.file, "row 1", "", column, message)
        if issue not in self.sink:
            self.sink.append(issue)


def load_jobs(
    path: Path, *, model: str | None = None, allow_unknown_model: bool = False
) -> JobSheet:
    """Read and validate a manifest; raise ManifestError with every problem found."""
    raw = read_manifest(Path(path))
    issues = list(raw.issues)
    model_id = (model or raw.model or DEFAULT_MODEL).strip().strip("/")
    spec = get_model(model_id)
    warnings = list(raw.warnings)
    if spec is None and not allow_unknown_model:
        issues.append(
            ManifestIssue(
                str(path),
                "",
                "",
                "model",
                f"unknown model {model_id!r}; known models: {', '.join(known_models())} "
                "(or pass --allow-unknown-model to send its fields unchecked)",
            )
        )
        raise ManifestError(issues)
    if spec is None:
        warnings.append(f"model {model_id!r} is unknown to batchgen: its fields are sent unchecked")
        if raw.price_per_second is None:
            warnings.append("no price is known for this model: cost estimates are $0")
    jobs = _validate_rows(raw, spec, model_id, issues)
    if issues:
        raise ManifestError(issues)
    if not jobs:
        raise ManifestError([ManifestIssue(str(path), "", "", "", "the manifest has no jobs")])
    settings = SheetSettings(raw.on_uncertain, raw.price_per_second)
    return JobSheet(Path(path), model_id, jobs, settings, warnings)


def _validate_rows(
    raw: RawManifest, spec: ModelSpec | None, model_id: str, issues: list[ManifestIssue]
) -> list[Job]:
    base = raw.path.parent
    defaults_problems = _Problems(RawRow("defaults", str(raw.path), {}, False), issues)
    defaults, defaults_local = _check_fields(dict(raw.defaults), spec, base, defaults_problems)
    jobs: list[Job] = []
    seen: dict[str, str] = {}
    derived_count: dict[str, int] = {}
    for row in raw.rows:
        problems = _Problems(row, issues)
        fields = dict(row.fields)
        explicit = fields.pop("id", None)
        job_id = ""
        if explicit not in (None, ""):
            job_id = str(explicit).strip()
            if isinstance(explicit, float) and explicit.is_integer():
                job_id = str(int(explicit))
            problems.job_id = job_id
            if not ID_PATTERN.match(job_id):
                problems.add(
                    "id",
                    f"id {job_id!r} is not filename-safe: use letters, digits, '.', '_' or '-', "
                    "at most 100 characters",
                )
            elif job_id in seen:
                problems.add("id", f"duplicate id {job_id!r}: also used in {seen[job_id]}")
        inputs, local = _check_fields(fields, spec, base, problems, sheet=row.from_sheet)
        for key, value in defaults.items():
            if key not in fields:
                inputs[key] = value
        for key, image in defaults_local.items():
            if key.split(".")[0] not in fields:
                local[key] = image
        if spec is not None:
            _check_rules(inputs, set(fields) | set(raw.defaults), spec, problems)
            _apply_schema_defaults(inputs, spec)
        if problems.count:
            continue
        if not job_id:
            job_id = _derive_id(inputs)
            n = derived_count.get(job_id, 0) + 1
            derived_count[job_id] = n
            if n > 1:
                job_id = f"{job_id}-{n}"
        seen[job_id] = row.row
        seconds = inputs.get("duration", 0)
        seconds = seconds if isinstance(seconds, int) and not isinstance(seconds, bool) else 0
        audio = bool(inputs.get("generate_audio", True))
        price = raw.price_per_second
        if price is None:
            price = spec.price_per_second(audio) if spec is not None else 0.0
        jobs.append(
            Job(
                id=job_id,
                position=len(jobs),
                row=row.row,
                model=model_id,
                inputs=inputs,
                local_images={k: v.path for k, v in local.items()},
                fingerprint=_fingerprint(model_id, inputs, local),
                seconds=seconds,
                estimated_cost=round(seconds * price, 6),
            )
        )
    return jobs


def _apply_schema_defaults(inputs: dict[str, Any], spec: ModelSpec) -> None:
    for name, prop in spec.properties.items():
        if name not in inputs and "default" in prop and name not in ("multi_prompt", "elements"):
            inputs[name] = prop["default"]


def _derive_id(inputs: dict[str, Any]) -> str:
    image = str(inputs.get("start_image_url", ""))
    stem = "job"
    if image and not image.startswith("data:"):
        stem = UNSAFE.sub("-", Path(image.split("?", 1)[0]).stem).strip("-._")[:40] or "job"
    digest = hashlib.sha256(f"{inputs.get('prompt', '')}\n{image}".encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def _fingerprint(model: str, inputs: dict[str, Any], local: dict[str, LocalImage]) -> str:
    document = {
        "model": model,
        "inputs": inputs,
        "images": {key: image.sha256 for key, image in sorted(local.items())},
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


# ---- fields -------------------------------------------------------------------------------------


def _check_fields(
    fields: dict[str, Any],
    spec: ModelSpec | None,
    base: Path,
    problems: _Problems,
    *,
    sheet: bool = False,
) -> tuple[dict[str, Any], dict[str, LocalImage]]:
    """Check and coerce one job's fields; returns (inputs, local images)."""
    inputs: dict[str, Any] = {}
    local: dict[str, LocalImage] = {}
    if fields.pop("multi_prompt__conflict", False):
        problems.add("multi_prompt", "give shots either as shotN_* columns or a multi_prompt cell")
    if spec is None:
        for name, value in fields.items():
            inputs[name] = value
            if name.endswith("image_url") and isinstance(value, str):
                image = _image(value, name, base, problems, None)
                if image is not None:
                    local[name] = image
        return inputs, local
    allowed = tuple(spec.properties)
    for name, value in fields.items():
        if name not in spec.properties and sheet:
            problems.add_column(
                name,
                f"unknown column for {spec.id}{suggest(name, allowed)}; "
                f"allowed: {', '.join(allowed)}",
            )
            continue
        if name not in spec.properties:
            problems.add(
                name,
                f"unknown field for {spec.id}{suggest(name, allowed)}; "
                f"allowed: {', '.join(allowed)}",
            )
            continue
        checked = _check_value(
            name, value, spec.properties[name], spec, base, problems, local, sheet
        )
        if checked is not _INVALID:
            inputs[name] = checked
    return inputs, local


def _check_rules(
    inputs: dict[str, Any], given: set[str], spec: ModelSpec, problems: _Problems
) -> None:
    """Rules across fields: required ones, exclusions, shot durations adding up."""
    for name in spec.required:
        if name not in given:
            problems.add(name, f"{name} is required")
    for first, second in spec.not_together:
        if inputs.get(first) and inputs.get(second):
            problems.add(second, f"{first} and {second} cannot be used together")
    shots = inputs.get("multi_prompt")
    if spec.shots_sum_to_duration and isinstance(shots, list) and shots:
        duration = inputs.get("duration", spec.properties.get("duration", {}).get("default"))
        total = sum(s.get("duration", 0) for s in shots)
        if isinstance(duration, int) and total != duration:
            problems.add(
                "multi_prompt",
                f"the shot durations add up to {total} s but duration is {duration} s: "
                "they must be equal",
            )


class _Invalid:
    pass


_INVALID: Any = _Invalid()


def _check_value(
    name: str,
    value: Any,
    prop: dict[str, Any],
    spec: ModelSpec,
    base: Path,
    problems: _Problems,
    local: dict[str, LocalImage],
    sheet: bool,
) -> Any:
    kind = prop.get("type")
    if name == "multi_prompt":
        return _check_shots(value, prop, problems)
    if name == "elements":
        return _check_elements(value, prop, spec, base, problems, local)
    if prop.get("format") == "image_uri" or name.endswith("image_url"):
        if not isinstance(value, str) or not value.strip():
            problems.add(name, "must be an https:// URL or a path to a local image file")
            return _INVALID
        image = _image(value.strip(), name, base, problems, spec)
        if image is not None:
            local[name] = image
        return value.strip()
    if kind == "integer":
        return _integer(name, value, prop, problems)
    if kind in ("number", "float"):
        return _number(name, value, prop, problems)
    if kind == "boolean":
        return _boolean(name, value, problems)
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            problems.add(name, f"must be text, got {_show(value)}")
            return _INVALID
        text = str(value).strip() if sheet else str(value)
        if "enum" in prop and text not in prop["enum"]:
            problems.add(name, f"must be one of {', '.join(prop['enum'])}, got {text!r}")
            return _INVALID
        limit = prop.get("maxLength")
        if limit is not None and len(text) > limit:
            problems.add(name, f"is {len(text)} characters long; at most {limit} are allowed")
            return _INVALID
        if name == "prompt" and not text.strip():
            problems.add(name, "prompt must not be empty")
            return _INVALID
        return text
    return value


def _integer(name: str, value: Any, prop: dict[str, Any], problems: _Problems) -> Any:
    low, high = prop.get("minimum"), prop.get("maximum")
    allowed = f"an integer from {low} to {high}" if low is not None else "an integer"
    number: Any = value
    if isinstance(value, str):
        text = value.strip().replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            problems.add(name, f"{name} must be {allowed}, got {value!r}")
            return _INVALID
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        problems.add(name, f"{name} must be {allowed}, got {_show(value)}")
        return _INVALID
    if float(number) != int(number):
        problems.add(name, f"{name} must be {allowed}, got {_show(value)}")
        return _INVALID
    number = int(number)
    if (low is not None and number < low) or (high is not None and number > high):
        problems.add(name, f"{name} must be {allowed}, got {number}")
        return _INVALID
    return number


def _number(name: str, value: Any, prop: dict[str, Any], problems: _Problems) -> Any:
    low, high = prop.get("minimum"), prop.get("maximum")
    allowed = f"a number from {low} to {high}" if low is not None else "a number"
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+,\d+", text):
            text = text.replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            problems.add(name, f"{name} must be {allowed}, got {value!r}")
            return _INVALID
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        problems.add(name, f"{name} must be {allowed}, got {_show(value)}")
        return _INVALID
    if (low is not None and number < low) or (high is not None and number > high):
        problems.add(name, f"{name} must be {allowed}, got {number:g}")
        return _INVALID
    return float(number)


def _boolean(name: str, value: Any, problems: _Problems) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1.0", "0.0"):
        text = text[0]
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    problems.add(
        name, f"{name} must be true or false (yes/no, 1/0, WAHR/FALSCH), got {_show(value)}"
    )
    return _INVALID


def _check_shots(value: Any, prop: dict[str, Any], problems: _Problems) -> Any:
    if not isinstance(value, list):
        problems.add(
            "multi_prompt", f"must be a list of shots {{prompt, duration}}, got {_show(value)}"
        )
        return _INVALID
    limit = prop.get("maxItems", 20)
    if len(value) > limit:
        problems.add("multi_prompt", f"has {len(value)} shots; at most {limit} are allowed")
        return _INVALID
    item_props = prop.get("items", {}).get("properties", {})
    shots = []
    ok = True
    for number, shot in enumerate(value, start=1):
        where = f"multi_prompt.shot{number}"
        if not isinstance(shot, dict):
            problems.add(where, f"a shot must be {{prompt, duration}}, got {_show(shot)}")
            ok = False
            continue
        for key in shot:
            if key not in ("prompt", "duration"):
                problems.add(
                    f"{where}.{key}",
                    f"unknown shot field{suggest(str(key), ['prompt', 'duration'])}",
                )
                ok = False
        prompt = shot.get("prompt")
        limit_len = item_props.get("prompt", {}).get("maxLength", 512)
        if not isinstance(prompt, str) or not prompt.strip():
            problems.add(f"{where}.prompt", "each shot needs a prompt")
            ok = False
        elif len(prompt) > limit_len:
            problems.add(
                f"{where}.prompt",
                f"is {len(prompt)} characters long; at most {limit_len} are allowed",
            )
            ok = False
        duration_prop = item_props.get("duration", {"minimum": 3, "maximum": 15})
        duration = _integer(
            f"{where}.duration",
            shot.get("duration", duration_prop.get("default", 5)),
            duration_prop,
            problems,
        )
        if duration is _INVALID:
            ok = False
        shots.append(
            {"prompt": prompt.strip() if isinstance(prompt, str) else prompt, "duration": duration}
        )
    return shots if ok else _INVALID


def _check_elements(
    value: Any,
    prop: dict[str, Any],
    spec: ModelSpec,
    base: Path,
    problems: _Problems,
    local: dict[str, LocalImage],
) -> Any:
    if not isinstance(value, list):
        problems.add("elements", f"must be a list of elements, got {_show(value)}")
        return _INVALID
    limit = prop.get("maxItems", 3)
    if len(value) > limit:
        problems.add("elements", f"has {len(value)} elements; at most {limit} are allowed")
        return _INVALID
    ok = True
    elements = []
    for index, element in enumerate(value):
        where = f"elements.{index}"
        label = f"element{index + 1}"
        if not isinstance(element, dict) or not element:
            problems.add(label, f"an element must be a mapping of {', '.join(ELEMENT_KEYS)}")
            ok = False
            continue
        checked: dict[str, Any] = {}
        for key, item in element.items():
            if key not in ELEMENT_KEYS:
                problems.add(
                    f"{label}_{key}", f"unknown element field{suggest(str(key), ELEMENT_KEYS)}"
                )
                ok = False
            elif key == "reference_image_urls":
                items = item if isinstance(item, list) else [item]
                for n, url in enumerate(items):
                    if not isinstance(url, str) or not url.strip():
                        problems.add(f"{label}_{key}", "must be image URLs or local image paths")
                        ok = False
                        continue
                    image = _image(url.strip(), f"{label}_{key}", base, problems, spec)
                    if image is not None:
                        local[f"{where}.{key}.{n}"] = image
                checked[key] = [str(u).strip() for u in items]
            elif key == "video_url":
                if not isinstance(item, str) or not item.startswith("https://"):
                    problems.add(
                        f"{label}_{key}", f"must be a public https:// URL, got {_show(item)}"
                    )
                    ok = False
                checked[key] = item
            else:
                if not isinstance(item, str) or not item.strip():
                    problems.add(f"{label}_{key}", "must be an https:// URL or a local image path")
                    ok = False
                    continue
                image = _image(item.strip(), f"{label}_{key}", base, problems, spec)
                if image is not None:
                    local[f"{where}.{key}"] = image
                checked[key] = item.strip()
        elements.append(checked)
    return elements if ok else _INVALID


# ---- images -------------------------------------------------------------------------------------


def _image(
    value: str, field_name: str, base: Path, problems: _Problems, spec: ModelSpec | None
) -> LocalImage | None:
    """Check an image reference; a local file is returned for sending as a data: URI."""
    if value.startswith("https://"):
        if len(value) <= len("https://") or " " in value:
            problems.add(field_name, f"{value!r} is not a valid https URL")
        return None
    if value.startswith("http://"):
        problems.add(field_name, "remote images must be https:// URLs (the service fetches them)")
        return None
    if value.startswith("data:"):
        if len(value) > (spec.max_inline_bytes if spec else 6 * 1024 * 1024):
            problems.add(field_name, "the data: URI is over 6 MiB: use a public https URL")
        return None
    if "://" in value:
        problems.add(field_name, f"{value!r}: only https:// URLs or local file paths are accepted")
        return None
    path = (base / value).resolve()
    result = _check_image_file(
        str(path),
        spec.min_side if spec else 300,
        spec.max_aspect if spec else 2.5,
        spec.max_file_bytes if spec else 10 * 1024 * 1024,
        spec.max_inline_bytes if spec else 6 * 1024 * 1024,
        tuple(sorted(spec.formats)) if spec else ("BMP", "JPEG", "PNG", "WEBP"),
    )
    if isinstance(result, str):
        problems.add(field_name, f"{value}: {result}")
        return None
    return result


@lru_cache(maxsize=4096)
def _check_image_file(
    path: str,
    min_side: int,
    max_aspect: float,
    max_bytes: int,
    max_inline: int,
    formats: tuple[str, ...],
) -> LocalImage | str:
    """A checked image, or the reason it cannot be used. Cached per file."""
    file = Path(path)
    if not file.is_file():
        return "file not found (a local image path is read relative to the manifest)"
    size = file.stat().st_size
    if size > max_bytes:
        return f"the image is {size / 2**20:.1f} MB; at most {max_bytes / 2**20:.0f} MB is allowed"
    try:
        with Image.open(file) as image:
            kind = image.format or ""
            width, height = image.size
    except (UnidentifiedImageError, OSError):
        return f"not a readable image: use {', '.join(formats)}"
    if kind not in formats:
        return f"{kind or 'this'} images are not accepted: use {', '.join(formats)}"
    if min(width, height) < min_side:
        return f"the image is {width}x{height} px; each side must be at least {min_side} px"
    ratio = width / height
    if ratio > max_aspect or ratio < 1 / max_aspect:
        return (
            f"the image is {width}x{height} px (aspect {ratio:.2f}); the aspect ratio must be "
            f"between 1:{max_aspect:g} and {max_aspect:g}:1"
        )
    inline = 4 * math.ceil(size / 3) + len(f"data:{MIME[kind]};base64,")
    if inline > max_inline:
        return (
            f"the image is {inline / 2**20:.1f} MiB as a data: URI, over the "
            f"{max_inline / 2**20:.0f} MiB the service accepts inline: put it at a public https "
            "URL instead"
        )
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return LocalImage(file, digest, MIME[kind], size)


_encoded: OrderedDict[Path, str] = OrderedDict()


def _data_uri(path: Path) -> str:
    """The file as a data: URI (a few recent ones kept in memory)."""
    if path in _encoded:
        _encoded.move_to_end(path)
        return _encoded[path]
    with Image.open(path) as image:
        mime = MIME.get(image.format or "", "image/png")
    uri = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    _encoded[path] = uri
    while len(_encoded) > 16:
        _encoded.popitem(last=False)
    return uri


def payload(job: Job) -> dict[str, Any]:
    """The JSON body to submit: ``job.inputs`` with local images as data: URIs."""
    body: dict[str, Any] = json.loads(json.dumps(job.inputs))
    for key, path in job.local_images.items():
        parts = key.split(".")
        target: Any = body
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        last = parts[-1]
        if isinstance(target, list):
            target[int(last)] = _data_uri(path)
        else:
            target[last] = _data_uri(path)
    return body


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return type(value).__name__
    return repr(value)
