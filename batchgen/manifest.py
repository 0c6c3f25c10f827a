"""Read a manifest (YAML, CSV or XLSX) into raw rows, located the way the user sees the file.

No field values are judged here (that is ``jobs.py``); this stage only knows file formats and
the habits of real spreadsheets: a UTF-8 BOM, ``;`` delimiters, CRLF, quoted new lines, blank
rows, stray spaces around headers, cp1252 files (read with a warning).

Rows keep their spreadsheet number (header = row 1) or their YAML line, and sheet columns are
already folded into structured fields: ``shot1_prompt``/``shot1_duration`` into
``multi_prompt``, ``element1_*`` into ``elements``.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ManifestError, ManifestIssue

SHEET_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm")
YAML_SUFFIXES = (".yaml", ".yml")
SHOT_COLUMN = re.compile(r"^shot(\d+)_(prompt|duration)$")
ELEMENT_COLUMN = re.compile(r"^element(\d+)_(frontal_image_url|reference_image_urls|video_url)$")
LIST_SPLIT = re.compile(r"\s*(?:\||\r?\n)\s*")


@dataclass(frozen=True, slots=True)
class RawRow:
    """One job as written: its location and its fields (values not yet checked)."""

    row: str  # "row 7" (sheet) or "line 12" (YAML)
    file: str
    fields: dict[str, Any]
    from_sheet: bool  # values are spreadsheet text and need coercion


@dataclass(slots=True)
class RawManifest:
    """A manifest's settings and rows."""

    path: Path
    model: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    price_per_second: float | None = None
    on_uncertain: str = "report"
    rows: list[RawRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    issues: list[ManifestIssue] = field(default_factory=list)


class ManifestHeader(BaseModel):
    """The top level of a YAML manifest (pydantic checks it at the boundary)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    defaults: dict[str, Any] | None = None
    jobs: list[Any] | None = None
    sheet: str | None = None
    price_per_second: float | None = Field(default=None, ge=0)
    on_uncertain: Literal["report", "resubmit"] = "report"


TOP_LEVEL_KEYS = tuple(ManifestHeader.model_fields)


def read_manifest(path: Path) -> RawManifest:
    """Read ``path``; raise ManifestError when the file itself cannot be used."""
    name = str(path)
    if not path.exists():
        raise ManifestError([ManifestIssue(name, "", "", "", "file not found")])
    if path.is_dir():
        raise ManifestError([ManifestIssue(name, "", "", "", "is a folder, not a manifest file")])
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return _read_yaml(path)
    if suffix in SHEET_SUFFIXES:
        manifest = RawManifest(path)
        manifest.rows = read_sheet(path, manifest.warnings)
        return manifest
    raise ManifestError(
        [
            ManifestIssue(
                name,
                "",
                "",
                "",
                f"unsupported file type {suffix or '(none)'}: use .yaml, .csv or .xlsx",
            )
        ]
    )


# ---- YAML ---------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> RawManifest:
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ManifestError([ManifestIssue(name, "", "", "", "not UTF-8 text")]) from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(
            [ManifestIssue(name, where, "", "", f"not valid YAML: {problem}")]
        ) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ManifestError([ManifestIssue(name, "", "", "", f"not valid YAML: {exc}")]) from None
    if data is None:
        raise ManifestError([ManifestIssue(name, "", "", "", "the manifest is empty")])
    if isinstance(data, list):
        data = {"jobs": data}
        assert node is not None
        job_nodes = node.value if isinstance(node, yaml.SequenceNode) else []
    elif isinstance(data, dict):
        job_nodes = _jobs_nodes(node)
    else:
        raise ManifestError(
            [
                ManifestIssue(
                    name, "", "", "", "the manifest must be a mapping with `jobs:` or `sheet:`"
                )
            ]
        )
    manifest = RawManifest(path)
    issues = manifest.issues
    for key in data:
        if str(key) not in TOP_LEVEL_KEYS:
            issues.append(
                ManifestIssue(
                    name, "", "", str(key), f"unknown setting{_suggest(str(key), TOP_LEVEL_KEYS)}"
                )
            )
    known = {k: v for k, v in data.items() if str(k) in TOP_LEVEL_KEYS}
    try:
        header = ManifestHeader.model_validate(known)
    except ValidationError as exc:
        for error in exc.errors():
            field_name = ".".join(str(p) for p in error["loc"][:1])
            issues.append(ManifestIssue(name, "", "", field_name, _pydantic_message(error)))
        raise ManifestError(issues) from None
    manifest.model = header.model
    manifest.defaults = dict(header.defaults or {})
    manifest.price_per_second = header.price_per_second
    manifest.on_uncertain = header.on_uncertain
    if header.jobs is not None and header.sheet is not None:
        issues.append(
            ManifestIssue(name, "", "", "sheet", "give either `jobs:` or `sheet:`, not both")
        )
    elif header.sheet is not None:
        sheet = (path.parent / header.sheet).resolve()
        if sheet.suffix.lower() not in SHEET_SUFFIXES:
            issues.append(
                ManifestIssue(name, "", "", "sheet", f"{header.sheet} is not a .csv or .xlsx sheet")
            )
        elif not sheet.exists():
            issues.append(ManifestIssue(name, "", "", "sheet", f"sheet {header.sheet} not found"))
        else:
            try:
                manifest.rows = read_sheet(sheet, manifest.warnings)
            except ManifestError as exc:
                issues.extend(exc.issues)
    elif header.jobs is not None:
        for index, job in enumerate(header.jobs):
            line = f"line {job_nodes[index].start_mark.line + 1}" if index < len(job_nodes) else ""
            if not isinstance(job, dict):
                issues.append(
                    ManifestIssue(name, line, "", "", "a job must be a mapping of fields")
                )
                continue
            manifest.rows.append(RawRow(line, name, {str(k): v for k, v in job.items()}, False))
        if not header.jobs:
            issues.append(ManifestIssue(name, "", "", "jobs", "`jobs:` is empty"))
    else:
        issues.append(
            ManifestIssue(name, "", "", "", "the manifest has neither `jobs:` nor `sheet:`")
        )
    return manifest


def _jobs_nodes(node: yaml.Node | None) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if (
                isinstance(key, yaml.ScalarNode)
                and key.value == "jobs"
                and isinstance(value, yaml.SequenceNode)
            ):
                return list(value.value)
    return []


def _pydantic_message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}, got {error.get('input')!r}"
    if kind in ("greater_than_equal", "float_parsing"):
        return f"must be a number >= 0, got {error.get('input')!r}"
    return f"{error['msg']}, got {error.get('input')!r}"


# ---- sheets -------------------------------------------------------------------------------------


def read_sheet(path: Path, warnings: list[str]) -> list[RawRow]:
    """Rows of a CSV or XLSX sheet, numbered as a spreadsheet shows them (header = row 1)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        frame = _read_xlsx(path)
    else:
        frame = _read_csv(path, warnings)
    name = str(path)
    columns = [str(c).strip().lower() for c in frame.columns]
    rows: list[RawRow] = []
    for number, values in enumerate(frame.itertuples(index=False, name=None), start=2):
        cells = {col: _cell(value) for col, value in zip(columns, values, strict=True)}
        if not any(cells.values()):
            continue  # a blank row: skipped, but numbering goes on as the sheet shows it
        rows.append(RawRow(f"row {number}", name, _fold_columns(cells), True))
    return rows


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _read_xlsx(path: Path) -> pd.DataFrame:
    try:
        return pd.read_excel(path, dtype=str, header=0, keep_default_na=False, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the user's file problem
        raise ManifestError(
            [ManifestIssue(str(path), "", "", "", f"cannot read the workbook: {exc}")]
        ) from None


def _read_csv(path: Path, warnings: list[str]) -> pd.DataFrame:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise ManifestError(
            [ManifestIssue(str(path), "", "", "", "this is not a text CSV file (binary data)")]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        warnings.append(f"{path} is not UTF-8; read it as Windows-1252 (cp1252): check accents")
    if not text.strip():
        raise ManifestError([ManifestIssue(str(path), "", "", "", "the sheet is empty")])
    first = text.split("\n", 1)[0]
    sep = max(("\t", ";", ","), key=first.count) if any(c in first for c in "\t;,") else ","
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        message = str(exc).strip().splitlines()[-1]
        match = re.search(r"line (\d+)", message)
        where = f"line {match.group(1)}" if match else ""
        raise ManifestError(
            [ManifestIssue(str(path), where, "", "", f"not a readable CSV sheet: {message}")]
        ) from None


def _fold_columns(cells: dict[str, str]) -> dict[str, Any]:
    """Spreadsheet columns into structured fields; empty cells are simply not set."""
    fields: dict[str, Any] = {}
    shots: dict[int, dict[str, str]] = {}
    elements: dict[int, dict[str, Any]] = {}
    for column, value in cells.items():
        shot = SHOT_COLUMN.match(column)
        element = ELEMENT_COLUMN.match(column)
        if shot:
            if value:
                shots.setdefault(int(shot.group(1)), {})[shot.group(2)] = value
        elif element:
            if value:
                key = element.group(2)
                parsed: Any = LIST_SPLIT.split(value) if key == "reference_image_urls" else value
                elements.setdefault(int(element.group(1)), {})[key] = parsed
        elif value:
            fields[column] = value
    if shots:
        if "multi_prompt" in fields:
            fields["multi_prompt__conflict"] = True
        fields["multi_prompt"] = [shots[n] for n in sorted(shots)]
    elif isinstance(fields.get("multi_prompt"), str):
        fields["multi_prompt"] = _json_cell(fields["multi_prompt"])
    if elements:
        fields["elements"] = [elements[n] for n in sorted(elements)]
    elif isinstance(fields.get("elements"), str):
        fields["elements"] = _json_cell(fields["elements"])
    return fields


def _json_cell(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value  # left as text: validation says it is not a list


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    import difflib

    word = word.lower()
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:1]
    return f" (did you mean {close[0]}?)" if close else ""


suggest = _suggest
