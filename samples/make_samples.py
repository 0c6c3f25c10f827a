"""Regenerate the sample images and samples/campaign.xlsx: `python samples/make_samples.py`."""

from __future__ import annotations

import csv
from pathlib import Path

from openpyxl import Workbook
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def picture(name: str, size: tuple[int, int], sky: tuple[int, int, int], draw_scene: str) -> None:
    """A small recognisable picture: a gradient sky and a simple scene."""
    w, h = size
    image = Image.new("RGB", size)
    d = ImageDraw.Draw(image)
    for y in range(h):
        t = y / h
        d.line([(0, y), (w, y)], fill=tuple(int(c * (1 - 0.6 * t)) for c in sky))
    if draw_scene == "lighthouse":
        d.rectangle((0, int(h * 0.72), w, h), fill=(20, 40, 80))
        d.polygon(
            [(w * 0.45, h * 0.75), (w * 0.55, h * 0.75), (w * 0.53, h * 0.3), (w * 0.47, h * 0.3)],
            fill=(235, 235, 235),
        )
        d.rectangle((w * 0.46, h * 0.25, w * 0.54, h * 0.31), fill=(250, 210, 80))
        d.polygon([(w * 0.54, h * 0.28), (w, h * 0.18), (w, h * 0.38)], fill=(255, 240, 170))
    elif draw_scene == "mountain":
        d.polygon([(0, h), (w * 0.35, h * 0.35), (w * 0.7, h)], fill=(70, 90, 110))
        d.polygon([(w * 0.3, h), (w * 0.7, h * 0.25), (w, h)], fill=(50, 70, 90))
        d.polygon(
            [(w * 0.63, h * 0.33), (w * 0.7, h * 0.25), (w * 0.77, h * 0.33)], fill=(250, 250, 250)
        )
        d.ellipse((w * 0.1, h * 0.1, w * 0.22, h * 0.1 + w * 0.12), fill=(255, 220, 120))
    elif draw_scene == "bottle":
        d.rectangle((0, int(h * 0.8), w, h), fill=(60, 40, 30))
        d.rounded_rectangle((w * 0.38, h * 0.35, w * 0.62, h * 0.8), radius=30, fill=(30, 120, 90))
        d.rectangle((w * 0.46, h * 0.2, w * 0.54, h * 0.36), fill=(30, 120, 90))
        d.rectangle((w * 0.4, h * 0.5, w * 0.6, h * 0.62), fill=(240, 230, 200))
    elif draw_scene == "face":
        d.ellipse((w * 0.25, h * 0.2, w * 0.75, h * 0.62), fill=(230, 190, 160))
        d.ellipse((w * 0.36, h * 0.33, w * 0.43, h * 0.38), fill=(40, 40, 40))
        d.ellipse((w * 0.57, h * 0.33, w * 0.64, h * 0.38), fill=(40, 40, 40))
        d.arc((w * 0.4, h * 0.42, w * 0.6, h * 0.52), 20, 160, fill=(120, 40, 40), width=4)
        d.rectangle((w * 0.3, h * 0.62, w * 0.7, h), fill=(200, 60, 70))
    d.text((10, 10), name, fill=(255, 255, 255))
    out = HERE / name
    image.save(out, quality=85) if name.endswith(".jpg") else image.save(out, optimize=True)


def workbook() -> None:
    """campaign.xlsx: the same rows as campaign.csv, as Excel stores them."""
    with open(HERE / "campaign.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    book = Workbook()
    sheet = book.active
    sheet.title = "jobs"
    for row in rows:
        sheet.append([_excel_value(v) for v in row])
    book.save(HERE / "campaign.xlsx")


def _excel_value(value: str) -> object:
    if value in ("TRUE", "FALSE"):
        return value == "TRUE"
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        return value


if __name__ == "__main__":
    picture("lighthouse.png", (640, 360), (255, 150, 90), "lighthouse")
    picture("mountain.jpg", (640, 360), (120, 170, 230), "mountain")
    picture("bottle.png", (480, 640), (240, 220, 200), "bottle")
    picture("portrait.jpg", (480, 640), (170, 200, 230), "face")
    workbook()
