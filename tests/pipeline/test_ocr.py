"""OCR of scans and images: real Tesseract on pages of real corpus text made here.

The pages are typeset with Pillow from the corpus (tests/pipeline/scans.py) and read back through
:func:`~app.pipeline.extract.extract` — mostly in the budgeted child process the pipeline uses —
so what is measured is the whole path: pypdf finds no text, PDFium renders, Tesseract reads, the
page map and the OCR flags come back. Hostile images fail alone, each with its reason; Tesseract
processes never outlive their limits. Pages are small (A5 or less, 100-150 dpi): each costs one
Tesseract run.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from app.config import Settings
from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    OcrUnavailable,
    PermanentError,
)
from app.pipeline.budget import ExtractBudget, extract_within_budget
from app.pipeline.extract import ExtractedText, OcrOptions, extract, normalize_text, ocr_status
from app.pipeline.extract.ocr import grayscale
from tests.pipeline import scans
from tests.security import hostile

TESSERACT = shutil.which("tesseract")
pytestmark = pytest.mark.skipif(
    TESSERACT is None and not os.environ.get("CI"),
    reason="Tesseract is not installed (make setup installs it); on CI a missing one fails",
)

FAST = OcrOptions(dpi=150)


def _budget(ocr: OcrOptions = FAST, **limits: float) -> ExtractBudget:
    return ExtractBudget(
        timeout_s=limits.get("timeout_s", 120.0),
        memory_mb=int(limits.get("memory_mb", 1024)),
        ocr=ocr,
    )


# ---- scanned and mixed PDFs ----------------------------------------------------------------------


def test_scanned_pdf_recovers_nine_tenths_of_its_words() -> None:
    page, shown = scans.typeset(scans.prose())
    assert len(shown.split()) > 150
    result = extract_within_budget(scans.scanned_pdf(page), "scan.pdf", _budget())
    assert scans.words_recovered(shown, result.text) >= 0.90
    assert result.content_type == "pdf"
    assert (result.page_count, result.page_numbers, result.ocr_pages) == (1, [1], (1,))
    assert result.ocr_ms is not None and result.ocr_ms > 0
    assert result.from_ocr(0, len(result.text))


def test_mixed_pdf_ocrs_only_the_page_without_text() -> None:
    layer = "It was in July, 1805, and the speaker was the well-known Anna Pavlovna Scherer."
    scan, shown = scans.typeset(scans.prose(20, 3))
    result = extract_within_budget(scans.mixed_pdf(layer, scan), "mixed.pdf", _budget())
    # Page 1 is its text layer, untouched; page 2 is OCR text; the page map says which is which.
    assert result.text.startswith(layer + "\n\n")
    assert result.page_count == 2
    assert result.page_starts == [0, len(layer) + 2]
    assert result.page_numbers == [1, 2]
    assert result.ocr_pages == (2,)
    assert scans.words_recovered(shown, result.text[len(layer) :]) >= 0.90
    assert result.page_at(5) == 1 and result.page_at(len(layer) + 10) == 2
    assert not result.from_ocr(0, len(layer))
    assert result.from_ocr(len(layer) + 2, len(result.text))
    assert result.from_ocr(len(layer) - 5, len(layer) + 8)  # a chunk across both pages

    # force: page 1 is read by OCR too (its text layer is replaced); off: page 2 is skipped.
    forced = extract(
        scans.mixed_pdf(layer, scans.typeset("A short second page of plain words.")[0]),
        "mixed.pdf",
        ocr=OcrOptions(dpi=150, mode="force"),
    )
    assert forced.ocr_pages == (1, 2) and "Pavlovna" in forced.text
    off = extract(scans.mixed_pdf(layer, scan), "mixed.pdf", ocr=OcrOptions(dpi=150, mode="off"))
    assert (off.text, off.page_numbers, off.ocr_pages, off.ocr_ms) == (layer, [1], (), None)


def test_short_text_layer_is_kept_when_ocr_reads_no_more() -> None:
    # Under min_page_chars, so OCR'd; OCR reads the same few words: the layer stays.
    result = extract(hostile.pdf_bytes([hostile.text_op("Chapter One")]), "title.pdf", ocr=FAST)
    assert (result.text, result.ocr_pages) == ("Chapter One", ())


def test_blank_scan_fails_with_a_reason() -> None:
    # Paper grain, not one colour: Tesseract runs, and finds nothing.
    paper = Image.effect_noise((874, 1240), 8).point(lambda v: 235 + v // 40)
    with pytest.raises(EmptyDocument, match="no text, even after OCR") as info:
        extract_within_budget(scans.scanned_pdf(paper), "blank.pdf", _budget())
    assert info.value.stage == "extract"


def test_ocr_page_limit_counts_pages_that_need_it() -> None:
    lines = [
        scans.typeset(f"Line {n} of a scanned letter.", inches=(4, 1), margin=0.2)[0]
        for n in (1, 2, 3)
    ]
    pdf = scans.scanned_pdf(*lines)
    with pytest.raises(DocumentTooLarge, match="needs OCR on more than 2 pages"):
        extract_within_budget(pdf, "letter.pdf", _budget(OcrOptions(dpi=150, max_pages=2)))
    # Blank pages are not counted (nor sent to Tesseract).
    blank = Image.new("L", (600, 150), 255)
    result = extract(
        scans.scanned_pdf(lines[0], blank, blank, blank),
        "x.pdf",
        ocr=OcrOptions(dpi=150, max_pages=1),
    )
    assert result.page_numbers == [1] and result.page_count == 4


# ---- images --------------------------------------------------------------------------------------


def _lines_image(text: str, size: tuple[int, int] = (900, 160), mode: str = "L") -> Image.Image:
    image = Image.new(mode, size, 255 if mode == "L" else (255, 255, 255, 0))
    font = ImageFont.load_default(size=28)
    ImageDraw.Draw(image).text((20, 40), text, fill=0 if mode == "L" else (0, 0, 0, 255), font=font)
    return image


def test_multi_page_tiff_keeps_page_numbers() -> None:
    first = "Soldiers marched along the road to Braunau."
    third = "The regiment halted near the bridge at dusk."
    frames = [_lines_image(first), Image.new("L", (900, 160), 255), _lines_image(third)]
    tiff = scans.encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    result = extract_within_budget(tiff, "letters.tif", _budget())
    assert result.content_type == "tiff"
    assert (result.page_count, result.page_numbers, result.ocr_pages) == (3, [1, 3], (1, 3))
    assert scans.words_recovered(first + " " + third, result.text) >= 0.9
    assert result.page_at(result.page_starts[1]) == 3  # type: ignore[index]


def test_photo_orientation_and_transparency_are_handled() -> None:
    text = "Receipt total forty two roubles"
    # A phone photo stored sideways, with the EXIF tag that says how to turn it (6: 90° CW).
    sideways = _lines_image(text).convert("RGB").rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = scans.encoded(sideways, "JPEG", quality=92, exif=exif.tobytes())
    assert scans.words_recovered(text, extract(photo, "receipt.jpg").text) >= 0.8
    # Black text on a transparent background (a logo, a screenshot of a web page).
    clear = scans.encoded(_lines_image(text, mode="RGBA"), "WEBP", lossless=True)
    result = extract(clear, "logo.webp")
    assert result.content_type == "webp"
    assert scans.words_recovered(text, result.text) >= 0.8


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("RGBA", (4, 4), (0, 0, 0, 0)), 255),  # transparent: white paper
        (Image.new("LA", (4, 4), (0, 0)), 255),
        (Image.new("I;16", (4, 4), 65535), 255),  # 16-bit white stays white (not clipped)
        (Image.new("I;16", (4, 4), 32768), 128),
        (Image.new("1", (4, 4), 0), 0),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), 255),
        (Image.new("RGB", (4, 4), (0, 0, 0)), 0),
        (Image.new("P", (4, 4), 0), 0),
    ],
)
def test_grayscale_gives_8_bit_on_white(image: Image.Image, expected: int) -> None:
    gray = grayscale(image)
    assert gray.mode == "L"
    assert gray.getpixel((0, 0)) == expected


def _png_with_bad_crc() -> bytes:
    data = bytearray(scans.png_claiming(64, 64, rows=64))
    data[29] ^= 0xFF  # the IHDR chunk's CRC
    return bytes(data)


def _truncated(fmt: str) -> bytes:
    page, _ = scans.typeset(scans.prose(3, 2), dpi=100)
    data = scans.encoded(page, fmt)
    return data[: len(data) * 6 // 10]


@pytest.mark.parametrize(
    ("name", "make", "error", "reason"),
    [
        (
            "bomb.png",
            lambda: scans.png_claiming(30_000, 30_000),
            DocumentTooLarge,
            "decompression bomb",
        ),
        (
            "huge.png",
            lambda: scans.png_claiming(12_000, 9_000),
            DocumentTooLarge,
            r"12,000 x 9,000 pixels \(page 1\); the limit is 89,478,485",
        ),
        (
            "truncated.png",
            lambda: _truncated("PNG"),
            CorruptDocument,
            "corrupt PNG image: image file is truncated",
        ),
        (
            "truncated.jpg",
            lambda: _truncated("JPEG"),
            CorruptDocument,
            "corrupt JPEG image: image file is truncated",
        ),
        (
            "lying.png",
            lambda: b"\x89PNG\r\n\x1a\n" + _truncated("JPEG"),
            CorruptDocument,
            "starts like one, but Pillow cannot read its header",
        ),
        ("bad-crc.png", _png_with_bad_crc, CorruptDocument, "corrupt PNG image"),
        (
            "lying.webp",
            lambda: b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(100),
            CorruptDocument,
            "corrupt WebP image",
        ),
        (
            "100-pages.tif",
            lambda: scans.tiff_with_pages(100),
            DocumentTooLarge,
            r"the TIFF image has more than 50 pages.*DOCVEC_OCR__MAX_PAGES",
        ),
    ],
)
def test_hostile_images_fail_with_a_reason(
    name: str, make: object, error: type[PermanentError], reason: str
) -> None:
    data = make()  # type: ignore[operator]
    with pytest.raises(error, match=reason) as info:
        extract_within_budget(data, name, _budget(OcrOptions()))
    assert info.value.stage == "extract"


def test_pixel_limit_is_the_setting() -> None:
    page = scans.encoded(Image.new("L", (2_000, 1_500), 255), "PNG")
    with pytest.raises(DocumentTooLarge, match=r"2,000 x 1,500 pixels.*limit is 1,000,000"):
        extract(page, "page.png", ocr=OcrOptions(max_image_pixels=1_000_000))


# ---- Tesseract's limits --------------------------------------------------------------------------


@pytest.fixture
def hung_tesseract(tmp_path: Path) -> tuple[Path, Path]:
    """A "tesseract" that answers --version and --list-langs like the real one, then hangs on a
    page (it becomes ``sleep``, same pid, written to a file): ``(program, pid file)``."""
    assert TESSERACT is not None
    pid_file = tmp_path / "tesseract.pid"
    program = tmp_path / "tesseract-hangs"
    program.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --version|--list-langs) exec {TESSERACT} "$@";; esac\n'
        f"echo $$ > {pid_file}\n"
        "exec sleep 300\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return program, pid_file


def _gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    # The kill is immediate; the wait only gives the kernel and init time to finish it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_page_timeout_kills_tesseract(hung_tesseract: tuple[Path, Path]) -> None:
    program, pid_file = hung_tesseract
    page = scans.scanned_pdf(
        scans.typeset("A page that never finishes.", inches=(4, 1), margin=0.2)[0]
    )
    options = OcrOptions(dpi=150, page_timeout_s=1, tesseract_cmd=str(program))
    with pytest.raises(DocumentTooLarge, match=r"OCR of page 1 took longer than 1 s"):
        extract_within_budget(page, "slow.pdf", _budget(options))
    assert _wait_gone(int(pid_file.read_text()))


def test_tesseract_dies_with_the_extraction_child(hung_tesseract: tuple[Path, Path]) -> None:
    program, pid_file = hung_tesseract
    page = scans.scanned_pdf(
        scans.typeset("A page that never finishes.", inches=(4, 1), margin=0.2)[0]
    )
    options = OcrOptions(dpi=150, page_timeout_s=600, tesseract_cmd=str(program))
    with pytest.raises(DocumentTooLarge, match=r"extraction took longer than 5 s"):
        extract_within_budget(page, "slow.pdf", _budget(options, timeout_s=5))
    # The child was killed at the deadline; its Tesseract had started, and died with it.
    assert pid_file.exists(), "Tesseract did not start within the 5 s budget"
    assert _wait_gone(int(pid_file.read_text()))


def test_tesseract_memory_limit() -> None:
    page, _ = scans.typeset(scans.prose(), dpi=150)
    options = OcrOptions(dpi=150, memory_mb=48)
    with pytest.raises(DocumentTooLarge, match=r"OCR of page 1 .*48 MiB of memory"):
        extract_within_budget(scans.scanned_pdf(page), "scan.pdf", _budget(options))


def test_options_follow_the_settings() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        extract_timeout_s=30,
        extract_memory_mb=700,
        ocr={"languages": "eng+deu", "dpi": 120, "page_timeout_s": 90, "max_pages": 7},
    )
    options = ExtractBudget.from_settings(settings).ocr
    assert options.language_list == ("eng", "deu")
    assert (options.dpi, options.max_pages, options.memory_mb) == (120, 7, 700)
    assert options.page_timeout_s == 30  # never more than the extraction budget
    with pytest.raises(ValueError, match="languages"):
        Settings(_env_file=None, ocr={"languages": "eng; rm -rf /"})  # type: ignore[call-arg]


# ---- availability --------------------------------------------------------------------------------


def test_status_reports_engine_version_and_languages() -> None:
    status = ocr_status(OcrOptions())
    assert status.available, status.reason
    assert status.engine == "tesseract" and status.command == TESSERACT
    assert status.version and status.version[0].isdigit()
    assert "eng" in status.installed_languages and status.languages == ("eng",)
    body = status.as_dict()
    assert body["available"] is True and body["reason"] is None and body["dpi"] == 200

    missing = ocr_status(OcrOptions(tesseract_cmd="/nonexistent/tesseract"))
    assert not missing.available and missing.version is None
    assert "'/nonexistent/tesseract' was not found" in (missing.reason or "")
    no_data = ocr_status(OcrOptions(languages="eng+chi_sim_vert"))
    assert not no_data.available and no_data.version == status.version
    assert "no language data for chi_sim_vert" in (no_data.reason or "")
    assert "tesseract-ocr-chi-sim-vert" in (no_data.reason or "")
    off = ocr_status(OcrOptions(mode="off"))
    assert not off.available and "DOCVEC_OCR__MODE=off" in (off.reason or "")


def test_without_ocr_images_fail_and_text_pages_stay() -> None:
    nowhere = OcrOptions(tesseract_cmd="/nonexistent/tesseract")
    png = scans.encoded(_lines_image("Some words"), "PNG")
    with pytest.raises(OcrUnavailable, match="can only be read by OCR: the Tesseract program"):
        extract(png, "x.png", ocr=nowhere)
    with pytest.raises(OcrUnavailable, match="OCR is off"):
        extract(png, "x.png", ocr=OcrOptions(mode="off"))
    scan = scans.scanned_pdf(_lines_image("Some words"))
    with pytest.raises(OcrUnavailable, match="without a text layer, and OCR could not run"):
        extract(scan, "scan.pdf", ocr=nowhere)
    # A text page beside an image page: the text is indexed, as before OCR existed.
    layer = "A page whose text layer is long enough to need no OCR at all."
    result = extract(scans.mixed_pdf(layer, _lines_image("Some words")), "m.pdf", ocr=nowhere)
    assert (result.text, result.ocr_pages) == (layer, ())


# ---- the OCR flag of a character range -----------------------------------------------------------


def test_from_ocr_by_page() -> None:
    text = "aaaa\n\nbbbb\n\ncccc"
    extracted = ExtractedText(
        text=text,
        page_starts=[0, 6, 12],
        page_numbers=[1, 3, 4],
        page_count=4,
        content_type="pdf",
        ocr_pages=(3,),
    )
    assert not extracted.from_ocr(0, 4)
    assert extracted.from_ocr(6, 10)
    assert extracted.from_ocr(2, 8)  # spans pages 1 and 3
    assert not extracted.from_ocr(12, 16)
    assert not extracted.from_ocr(0, 6)  # ends on the blank line that belongs to page 1
    plain = ExtractedText(text, None, None, None, "text")
    assert not plain.from_ocr(0, len(text))
    # ocr_ms is a timing: equal extractions compare equal whatever it was.
    assert extracted == ExtractedText(**{**extracted.__dict__, "ocr_ms": 12.5})


def test_ocr_text_is_normalised() -> None:
    result = extract(scans.encoded(_lines_image("Spaced    out    words"), "PNG"), "x.png")
    assert "Spaced out words" in result.text
    assert normalize_text(result.text) == result.text
