"""Manifests: the broken corpus (every mistake located by row and field), real-world sheets,
the samples, and random junk that must end in a clean error."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from PIL import Image

from batchgen.errors import ManifestError, ManifestIssue
from batchgen.jobs import JobSheet, load_jobs, payload

from .conftest import ROOT

FIXTURES = Path(__file__).parent / "fixtures"
IMG = "https://img.example.com/a.png"
HEAD = "prompt,start_image_url"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local images next to the manifests: good ones and every kind of bad one."""
    tmp_path = tmp_path_factory.mktemp("images")
    Image.new("RGB", (640, 360), (200, 80, 40)).save(tmp_path / "ok.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "tiny.png")
    Image.new("RGB", (1200, 400)).save(tmp_path / "wide.png")
    Image.new("RGB", (400, 400)).save(tmp_path / "anim.gif")
    (tmp_path / "fake.png").write_text("not an image")
    noise = Image.frombytes("RGB", (1600, 1600), random.Random(1).randbytes(1600 * 1600 * 3))
    noise.save(tmp_path / "huge.png")  # incompressible, ~7.7 MB: over 6 MiB as a data: URI
    return tmp_path


def yaml_jobs(*jobs: str, head: str = "") -> str:
    """A YAML manifest with the given job bodies (each a flow mapping)."""
    return head + "jobs:\n" + "".join(f"  - {job}\n" for job in jobs)


OK = f"{{prompt: fine, start_image_url: {IMG}}}"

# (case id, file suffix, content, expected row, expected field, message substring)
CORPUS: list[tuple[str, str, str, str, str, str]] = [
    ("yaml-not-yaml", ".yaml", "jobs: [unclosed\n", "line 2", "", "not valid YAML"),
    ("yaml-empty", ".yaml", "", "", "", "empty"),
    ("yaml-scalar", ".yaml", "just a string\n", "", "", "must be a mapping"),
    (
        "yaml-no-jobs",
        ".yaml",
        "model: kling/kling-3.0/standard/image-to-video\n",
        "",
        "",
        "neither",
    ),
    ("yaml-empty-jobs", ".yaml", "jobs: []\n", "", "jobs", "empty"),
    (
        "yaml-unknown-setting",
        ".yaml",
        "jbos: []\njobs: [" + OK + "]\n",
        "",
        "jbos",
        "did you mean jobs",
    ),
    (
        "yaml-bad-on-uncertain",
        ".yaml",
        "on_uncertain: maybe\n" + yaml_jobs(OK),
        "",
        "on_uncertain",
        "resubmit",
    ),
    (
        "yaml-negative-price",
        ".yaml",
        "price_per_second: -1\n" + yaml_jobs(OK),
        "",
        "price_per_second",
        ">= 0",
    ),
    ("yaml-job-not-mapping", ".yaml", yaml_jobs(OK, "just text"), "line 3", "", "mapping"),
    (
        "yaml-missing-prompt",
        ".yaml",
        yaml_jobs(OK, f"{{start_image_url: {IMG}}}"),
        "line 3",
        "prompt",
        "required",
    ),
    (
        "yaml-missing-image",
        ".yaml",
        yaml_jobs("{prompt: hi}"),
        "line 2",
        "start_image_url",
        "required",
    ),
    (
        "yaml-empty-prompt",
        ".yaml",
        yaml_jobs(f"{{prompt: '  ', start_image_url: {IMG}}}"),
        "line 2",
        "prompt",
        "must not be empty",
    ),
    (
        "yaml-long-prompt",
        ".yaml",
        yaml_jobs(f"{{prompt: {'a' * 2501}, start_image_url: {IMG}}}"),
        "line 2",
        "prompt",
        "at most 2500",
    ),
    (
        "yaml-long-negative",
        ".yaml",
        yaml_jobs(f"{{prompt: a, negative_prompt: {'b' * 2501}, start_image_url: {IMG}}}"),
        "line 2",
        "negative_prompt",
        "at most 2500",
    ),
    (
        "yaml-duration-high",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, duration: 20}}"),
        "line 2",
        "duration",
        "integer from 3 to 15, got 20",
    ),
    (
        "yaml-duration-low",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, duration: 2}}"),
        "line 2",
        "duration",
        "integer from 3 to 15",
    ),
    (
        "yaml-duration-fraction",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, duration: 5.5}}"),
        "line 2",
        "duration",
        "integer",
    ),
    (
        "yaml-duration-bool",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, duration: true}}"),
        "line 2",
        "duration",
        "integer",
    ),
    (
        "yaml-cfg-high",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, cfg_scale: 1.5}}"),
        "line 2",
        "cfg_scale",
        "number from 0 to 1",
    ),
    (
        "yaml-cfg-text",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, cfg_scale: high}}"),
        "line 2",
        "cfg_scale",
        "number",
    ),
    (
        "yaml-audio-word",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, generate_audio: sometimes}}"),
        "line 2",
        "generate_audio",
        "true or false",
    ),
    (
        "yaml-shot-type",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, shot_type: intelligent}}"),
        "line 2",
        "shot_type",
        "must be one of customize",
    ),
    (
        "yaml-typo-field",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, durration: 5}}"),
        "line 2",
        "durration",
        "did you mean duration",
    ),
    (
        "yaml-shots-sum",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, duration: 10, multi_prompt: [{{prompt: x, duration: 4}}, {{prompt: y, duration: 4}}]}}"
        ),
        "line 2",
        "multi_prompt",
        "add up to 8 s but duration is 10 s",
    ),
    (
        "yaml-shots-not-list",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, multi_prompt: two shots}}"),
        "line 2",
        "multi_prompt",
        "list of shots",
    ),
    (
        "yaml-shot-long",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, duration: 5, multi_prompt: [{{prompt: {'c' * 513}, duration: 5}}]}}"
        ),
        "line 2",
        "multi_prompt.shot1.prompt",
        "at most 512",
    ),
    (
        "yaml-shot-duration",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, duration: 5, multi_prompt: [{{prompt: x, duration: 1}}, {{prompt: y, duration: 4}}]}}"
        ),
        "line 2",
        "multi_prompt.shot1.duration",
        "integer from 3 to 15",
    ),
    (
        "yaml-shot-no-prompt",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, duration: 5, multi_prompt: [{{duration: 5}}]}}"
        ),
        "line 2",
        "multi_prompt.shot1.prompt",
        "needs a prompt",
    ),
    (
        "yaml-too-many-elements",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, elements: [{{frontal_image_url: {IMG}}}, {{frontal_image_url: {IMG}}}, {{frontal_image_url: {IMG}}}, {{frontal_image_url: {IMG}}}]}}"
        ),
        "line 2",
        "elements",
        "at most 3",
    ),
    (
        "yaml-element-typo",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, elements: [{{frontal_image: {IMG}}}]}}"),
        "line 2",
        "element1_frontal_image",
        "did you mean frontal_image_url",
    ),
    (
        "yaml-element-video-http",
        ".yaml",
        yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, elements: [{{video_url: 'http://v.example/a.mp4'}}]}}"
        ),
        "line 2",
        "element1_video_url",
        "https",
    ),
    (
        "yaml-http-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: 'http://img.example.com/a.png'}"),
        "line 2",
        "start_image_url",
        "https",
    ),
    (
        "yaml-ftp-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: 'ftp://img.example.com/a.png'}"),
        "line 2",
        "start_image_url",
        "only https",
    ),
    (
        "yaml-missing-file",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: nothere.png}"),
        "line 2",
        "start_image_url",
        "file not found",
    ),
    (
        "yaml-tiny-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: tiny.png}"),
        "line 2",
        "start_image_url",
        "at least 300 px",
    ),
    (
        "yaml-wide-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: wide.png}"),
        "line 2",
        "start_image_url",
        "aspect ratio",
    ),
    (
        "yaml-gif-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: anim.gif}"),
        "line 2",
        "start_image_url",
        "GIF images are not accepted",
    ),
    (
        "yaml-fake-image",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: fake.png}"),
        "line 2",
        "start_image_url",
        "not a readable image",
    ),
    (
        "yaml-huge-inline",
        ".yaml",
        yaml_jobs("{prompt: a, start_image_url: huge.png}"),
        "line 2",
        "start_image_url",
        "public https URL",
    ),
    (
        "yaml-bad-id",
        ".yaml",
        yaml_jobs(f"{{id: 'hero 01/x', prompt: a, start_image_url: {IMG}}}"),
        "line 2",
        "id",
        "not filename-safe",
    ),
    (
        "yaml-long-id",
        ".yaml",
        yaml_jobs(f"{{id: {'x' * 101}, prompt: a, start_image_url: {IMG}}}"),
        "line 2",
        "id",
        "at most 100",
    ),
    (
        "yaml-dup-id",
        ".yaml",
        yaml_jobs(
            f"{{id: a, prompt: a, start_image_url: {IMG}}}",
            f"{{id: a, prompt: b, start_image_url: {IMG}}}",
        ),
        "line 3",
        "id",
        "also used in line 2",
    ),
    (
        "yaml-unknown-model",
        ".yaml",
        "model: kling/kling-9/ultra\n" + yaml_jobs(OK),
        "",
        "model",
        "known models: kling/kling-3.0/pro",
    ),
    (
        "yaml-end-image-standard",
        ".yaml",
        yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, end_image_url: {IMG}}}"),
        "line 2",
        "end_image_url",
        "unknown field",
    ),
    (
        "yaml-pro-end-with-shots",
        ".yaml",
        "model: kling/kling-3.0/pro/image-to-video\n"
        + yaml_jobs(
            f"{{prompt: a, start_image_url: {IMG}, end_image_url: {IMG}, duration: 5, multi_prompt: [{{prompt: x, duration: 5}}]}}"
        ),
        "line 3",
        "multi_prompt",
        "cannot be used together",
    ),
    (
        "yaml-bad-default",
        ".yaml",
        "defaults: {duration: 99}\n" + yaml_jobs(OK),
        "defaults",
        "duration",
        "integer from 3 to 15",
    ),
    ("yaml-sheet-missing", ".yaml", "sheet: rows.csv\n", "", "sheet", "not found"),
    ("yaml-sheet-and-jobs", ".yaml", "sheet: rows.csv\n" + yaml_jobs(OK), "", "sheet", "not both"),
    (
        "csv-typo-header",
        ".csv",
        f"prompt,start_image_url,durration\nhi,{IMG},5\nho,{IMG},5\n",
        "row 1",
        "durration",
        "did you mean duration",
    ),
    (
        "csv-duration-text",
        ".csv",
        f"{HEAD},duration\nhi,{IMG},ten\n",
        "row 2",
        "duration",
        "integer from 3 to 15, got 'ten'",
    ),
    (
        "csv-row-number-after-blank",
        ".csv",
        f"{HEAD},duration\nhi,{IMG},5\n\n,,\nhi,{IMG},16\n",
        "row 5",
        "duration",
        "got 16",
    ),
    ("csv-missing-image", ".csv", f"{HEAD}\nhi,\n", "row 2", "start_image_url", "required"),
    (
        "csv-bool",
        ".csv",
        f"{HEAD},generate_audio\nhi,{IMG},maybe\n",
        "row 2",
        "generate_audio",
        "WAHR/FALSCH",
    ),
    (
        "csv-shots-sum",
        ".csv",
        f"{HEAD},duration,shot1_prompt,shot1_duration,shot2_prompt,shot2_duration\nhi,{IMG},10,a,3,b,3\n",
        "row 2",
        "multi_prompt",
        "add up to 6 s but duration is 10 s",
    ),
    (
        "csv-shot-duration-text",
        ".csv",
        f"{HEAD},duration,shot1_prompt,shot1_duration\nhi,{IMG},5,a,five\n",
        "row 2",
        "multi_prompt.shot1.duration",
        "integer",
    ),
    (
        "csv-multi-json-bad",
        ".csv",
        f'{HEAD},multi_prompt\nhi,{IMG},"[not json"\n',
        "row 2",
        "multi_prompt",
        "list of shots",
    ),
    (
        "csv-dup-id",
        ".csv",
        f"id,{HEAD}\nx,a,{IMG}\nx,b,{IMG}\n",
        "row 3",
        "id",
        "also used in row 2",
    ),
    ("csv-binary", ".csv", "\x00\x01\x02binary", "", "", "not a text CSV"),
    ("csv-empty", ".csv", "", "", "", "empty"),
    ("txt-ext", ".json", "{}", "", "", "unsupported file type .json"),
]


@pytest.mark.parametrize(
    ("case", "suffix", "content", "row", "field", "message"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_broken_manifest_is_located(
    images: Path, case: str, suffix: str, content: str, row: str, field: str, message: str
) -> None:
    """Each broken manifest fails with the exact row, field and message, and nothing else odd."""
    path = images / f"{case}{suffix}"
    path.write_text(content, encoding="utf-8")
    if case == "yaml-sheet-and-jobs":
        (images / "rows.csv").write_text(f"{HEAD}\nhi,{IMG}\n")
    with pytest.raises(ManifestError) as info:
        load_jobs(path)
    matching = [
        issue
        for issue in info.value.issues
        if issue.row == row and issue.field == field and message in issue.message
    ]
    assert matching, "\n".join(str(i) for i in info.value.issues)
    assert len(info.value.issues) == len(set(info.value.issues)), "an issue reported twice"
    assert all(issue.file for issue in info.value.issues)


XLSX_CORPUS = [
    (
        "xlsx-duration",
        [["prompt", "start_image_url", "duration"], ["hi", IMG, 30]],
        "row 2",
        "duration",
        "got 30",
    ),
    (
        "xlsx-typo",
        [["prompt", "start_image_url", "cfg"], ["hi", IMG, 0.5]],
        "row 1",
        "cfg",
        "did you mean cfg_scale",
    ),
    (
        "xlsx-blank-rows-keep-numbers",
        [["prompt", "start_image_url"], ["hi", IMG], [None, None], ["", "http://x.example/a.png"]],
        "row 4",
        "start_image_url",
        "https",
    ),
    (
        "xlsx-missing-prompt",
        [["prompt", "start_image_url"], [None, IMG]],
        "row 2",
        "prompt",
        "required",
    ),
]


@pytest.mark.parametrize(
    ("case", "rows", "row", "field", "message"), XLSX_CORPUS, ids=[c[0] for c in XLSX_CORPUS]
)
def test_broken_xlsx_is_located(
    tmp_path: Path, case: str, rows: list[list[object]], row: str, field: str, message: str
) -> None:
    """Broken Excel sheets are located by the row Excel shows."""
    book = Workbook()
    for values in rows:
        book.active.append(values)
    path = tmp_path / f"{case}.xlsx"
    book.save(path)
    with pytest.raises(ManifestError) as info:
        load_jobs(path)
    assert any(
        i.row == row and i.field == field and message in i.message for i in info.value.issues
    ), "\n".join(str(i) for i in info.value.issues)


def test_corpus_size() -> None:
    """The broken corpus keeps at least 40 cases across YAML, CSV and XLSX."""
    assert len(CORPUS) + len(XLSX_CORPUS) >= 40
    assert {c[1] for c in CORPUS} >= {".yaml", ".csv"}


def test_all_errors_are_reported_together(tmp_path: Path) -> None:
    """A sheet with many mistakes lists every one of them, not only the first."""
    path = tmp_path / "many.csv"
    path.write_text(
        f"{HEAD},duration,cfg_scale\nhi,{IMG},99,0.5\n,{IMG},5,7\nok,http://x.example/a.png,5,0.5\n"
    )
    with pytest.raises(ManifestError) as info:
        load_jobs(path)
    found = {(i.row, i.field) for i in info.value.issues}
    assert found == {
        ("row 2", "duration"),
        ("row 3", "prompt"),
        ("row 3", "cfg_scale"),
        ("row 4", "start_image_url"),
    }


def test_issue_names_job_id_when_given(tmp_path: Path) -> None:
    """An issue on a row with an id names that job."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml_jobs(f"{{id: hero-7, prompt: a, start_image_url: {IMG}, duration: 1}}"))
    with pytest.raises(ManifestError) as info:
        load_jobs(path)
    issue: ManifestIssue = info.value.issues[0]
    assert issue.job_id == "hero-7"
    assert str(issue) == (
        f"{path}, line 2, job hero-7, field duration: "
        "duration must be an integer from 3 to 15, got 1"
    )


# ---- real-world sheets --------------------------------------------------------------------


def first(sheet: JobSheet) -> dict[str, object]:
    """The first job's inputs."""
    return sheet.jobs[0].inputs


@pytest.mark.parametrize(
    ("fixture", "check"),
    [
        ("bom.csv", lambda s: first(s)["prompt"] == "A lighthouse at dusk"),
        ("semicolon_decimal_comma.csv", lambda s: first(s)["cfg_scale"] == 0.5),
        ("crlf.csv", lambda s: [j.inputs["duration"] for j in s.jobs] == [5, 6]),
        ("quoted_newlines.csv", lambda s: first(s)["prompt"] == "Line one, with a comma\nline two"),
        ("excel_floats.csv", lambda s: first(s)["duration"] == 10),
        (
            "booleans.csv",
            lambda s: (
                [j.inputs["generate_audio"] for j in s.jobs]
                == [True, False, True, False, True, False, True, False]
            ),
        ),
        (
            "german_booleans.csv",
            lambda s: [j.inputs["generate_audio"] for j in s.jobs] == [True, False],
        ),
        ("header_spaces.csv", lambda s: first(s)["duration"] == 5),
        ("blank_rows.csv", lambda s: [j.row for j in s.jobs] == ["row 2", "row 4", "row 7"]),
        ("cp1252.csv", lambda s: first(s)["prompt"] == "Café au lait, crème brûlée"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_real_world_sheet(fixture: str, check: object) -> None:
    """Sheets as Excel and Google Sheets really save them are read right."""
    sheet = load_jobs(FIXTURES / "sheets" / fixture)
    assert callable(check) and check(sheet)


def test_cp1252_sheet_warns() -> None:
    """A non-UTF-8 sheet is read, with a warning saying how."""
    sheet = load_jobs(FIXTURES / "sheets" / "cp1252.csv")
    assert any("cp1252" in w for w in sheet.warnings)


# ---- samples, ids, payload ----------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    [
        "samples/inline.yaml",
        "samples/with_sheet.yaml",
        "samples/campaign.csv",
        "samples/campaign.xlsx",
        "jobs/demo.yaml",
        "jobs/nightly/manifest.yaml",
    ],
)
def test_samples_validate(manifest: str) -> None:
    """Every shipped manifest is valid."""
    assert load_jobs(ROOT / manifest).jobs


def test_samples_use_every_field() -> None:
    """Between them, the samples use every input field of the model, shots and elements included."""
    used: set[str] = set()
    for manifest in ("samples/inline.yaml", "samples/campaign.xlsx", "samples/with_sheet.yaml"):
        for job in load_jobs(ROOT / manifest).jobs:
            used |= set(job.inputs)
            for element in job.inputs.get("elements", []):
                used |= {f"elements.{k}" for k in element}
    assert used >= {
        "prompt",
        "start_image_url",
        "duration",
        "generate_audio",
        "negative_prompt",
        "cfg_scale",
        "shot_type",
        "multi_prompt",
        "elements",
        "elements.frontal_image_url",
        "elements.reference_image_urls",
        "elements.video_url",
    }


def test_xlsx_and_csv_samples_agree() -> None:
    """The Excel sample holds the same jobs as the CSV sample."""
    csv_jobs = load_jobs(ROOT / "samples/campaign.csv").jobs
    xlsx_jobs = load_jobs(ROOT / "samples/campaign.xlsx").jobs
    assert [j.inputs for j in csv_jobs] == [j.inputs for j in xlsx_jobs]


def test_derived_ids_survive_inserts_and_reorders(tmp_path: Path) -> None:
    """Without ids, inserting or reordering rows never changes another job's id."""
    rows = [f"p{i},https://img.example.com/shot{i}.png" for i in range(5)]
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.write_text(HEAD + "\n" + "\n".join(rows) + "\n")
    two.write_text(HEAD + "\n" + "\n".join(["new,https://img.example.com/n.png", *reversed(rows)]))
    ids_one = {j.inputs["prompt"]: j.id for j in load_jobs(one).jobs}
    ids_two = {j.inputs["prompt"]: j.id for j in load_jobs(two).jobs}
    assert all(ids_two[p] == i for p, i in ids_one.items())
    assert ids_one["p0"].startswith("shot0-")


def test_identical_rows_get_numbered_ids(tmp_path: Path) -> None:
    """Two identical rows are two jobs: the second gets a -2 suffix."""
    path = tmp_path / "m.csv"
    path.write_text(f"{HEAD}\nsame,{IMG}\nsame,{IMG}\n")
    a, b = load_jobs(path).jobs
    assert b.id == f"{a.id}-2"


def test_local_images_travel_as_data_uris(images: Path) -> None:
    """A local image is sent as a data: URI, but the job keeps the path the user wrote."""
    path = images / "m.yaml"
    path.write_text(
        yaml_jobs(
            "{prompt: a, start_image_url: ok.png, elements: "
            "[{frontal_image_url: ok.png, reference_image_urls: [ok.png, " + IMG + "]}]}"
        )
    )
    job = load_jobs(path).jobs[0]
    assert job.inputs["start_image_url"] == "ok.png"
    body = payload(job)
    assert body["start_image_url"].startswith("data:image/png;base64,")
    assert body["elements"][0]["frontal_image_url"].startswith("data:image/png;base64,")
    assert body["elements"][0]["reference_image_urls"][0].startswith("data:image/png")
    assert body["elements"][0]["reference_image_urls"][1] == IMG
    assert "base64" not in json.dumps(job.inputs)


def test_fingerprint_follows_image_content(images: Path) -> None:
    """Changing a local image's pixels changes the job's fingerprint (it is a different job)."""
    path = images / "m.yaml"
    path.write_text(yaml_jobs("{id: a, prompt: a, start_image_url: ok.png}"))
    before = load_jobs(path).jobs[0].fingerprint
    Image.new("RGB", (640, 360), (0, 0, 255)).save(images / "ok2.png")
    path.write_text(yaml_jobs("{id: a, prompt: a, start_image_url: ok2.png}"))
    assert load_jobs(path).jobs[0].fingerprint != before


def test_defaults_and_costs(tmp_path: Path) -> None:
    """Schema defaults are filled in; cost follows audio and the manifest's price override."""
    path = tmp_path / "m.yaml"
    path.write_text(yaml_jobs(OK, f"{{prompt: b, start_image_url: {IMG}, generate_audio: no}}"))
    audio, silent = load_jobs(path).jobs
    assert audio.inputs["duration"] == 10 and audio.inputs["generate_audio"] is True
    assert audio.inputs["cfg_scale"] == 0.5 and audio.inputs["shot_type"] == "customize"
    assert audio.estimated_cost == pytest.approx(1.26)
    assert silent.estimated_cost == pytest.approx(0.84)
    path.write_text("price_per_second: 0.2\n" + yaml_jobs(OK))
    assert load_jobs(path).jobs[0].estimated_cost == pytest.approx(2.0)


def test_unknown_model_allowed_with_warning(tmp_path: Path) -> None:
    """--allow-unknown-model passes fields through, with a warning."""
    path = tmp_path / "m.yaml"
    path.write_text("model: acme/new-video\n" + yaml_jobs("{prompt: a, seconds: 4}"))
    sheet = load_jobs(path, allow_unknown_model=True)
    assert sheet.jobs[0].inputs == {"prompt": "a", "seconds": 4}
    assert any("unknown to batchgen" in w for w in sheet.warnings)


def test_pro_model_accepts_end_image(tmp_path: Path) -> None:
    """Kling 3.0 pro takes end_image_url, and costs the pro price."""
    path = tmp_path / "m.yaml"
    path.write_text(
        "model: kling/kling-3.0/pro/image-to-video\n"
        + yaml_jobs(f"{{prompt: a, start_image_url: {IMG}, end_image_url: {IMG}, duration: 5}}")
    )
    job = load_jobs(path).jobs[0]
    assert job.inputs["end_image_url"] == IMG
    assert job.estimated_cost == pytest.approx(5 * 0.168)


# ---- junk never crashes -------------------------------------------------------------------

junk_text = st.text(max_size=300)
junk_cells = st.lists(
    st.lists(
        st.one_of(st.text(max_size=30), st.sampled_from(["prompt", "duration", IMG, "5"])),
        min_size=1,
        max_size=5,
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    suffix=st.sampled_from([".yaml", ".csv"]),
    content=st.one_of(junk_text, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
)
def test_random_junk_is_a_clean_error(tmp_path: Path, suffix: str, content: str) -> None:
    """Random junk either loads or raises ManifestError: never another exception."""
    path = tmp_path / f"junk{suffix}"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    try:
        load_jobs(path)
    except ManifestError as exc:
        assert exc.issues


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=junk_cells)
def test_random_sheets_are_clean_errors(tmp_path: Path, rows: list[list[str]]) -> None:
    """Random spreadsheet cells (CSV and XLSX) load or fail cleanly."""
    import csv

    path = tmp_path / "junk.csv"
    with open(path, "w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        csv.writer(fh).writerows(rows)
    book = Workbook()
    for row in rows:
        # openpyxl refuses control characters and lone surrogates in cells; Excel cannot hold them
        book.active.append(
            [ILLEGAL_CHARACTERS_RE.sub("", c).encode("utf-8", "replace").decode() for c in row]
        )
    xlsx = tmp_path / "junk.xlsx"
    book.save(xlsx)
    for candidate in (path, xlsx):
        try:
            load_jobs(candidate)
        except ManifestError as exc:
            assert exc.issues
