"""The image reader: PNG, JPEG, TIFF (every page) and WebP, decoded by Pillow and read by OCR.

An image upload is the least trusted input docvec takes: a few kilobytes can declare a billion
pixels (a decompression bomb), a header can lie about what follows, and a TIFF can hold thousands
of pages. So, in this order and before any page is decoded:

1. the file must open as the type its signature says (``formats=[...]``: Pillow tries no other);
2. a TIFF's pages are counted by walking its directories, at most ``max_pages + 1`` of them;
3. each page's size, from its header, must stay within ``max_image_pixels``; Pillow's own
   decompression-bomb error (at twice its default limit) is kept as a backstop;
4. then the page is decoded: truncated or inconsistent data fails the document as corrupt.

Only a TIFF's pages are pages: the further frames of an animated PNG or WebP, or of a JPEG's
multi-picture extension, are pictures of one page, and only the first is read. A photo's EXIF
orientation is applied, so that a phone picture taken sideways is read upright.

:func:`check_upload` runs the cheap half of this (the header and the pixel count) on an upload
before it is stored; everything else happens in the extraction child, under its budget.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from app.errors import (
    CorruptDocument,
    DocumentTooLarge,
    EmptyDocument,
    OcrUnavailable,
    PermanentError,
)
from app.pipeline.extract.base import STAGE, ExtractedText, explain
from app.pipeline.extract.detect import IMAGE_TYPES
from app.pipeline.extract.ocr import OcrOptions, Tesseract

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["IMAGE_FORMATS", "check_upload", "extract_image"]

#: Pillow's format name for each image type of :data:`~app.pipeline.extract.IMAGE_TYPES`.
IMAGE_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "webp": "WEBP"}
assert set(IMAGE_FORMATS) == IMAGE_TYPES

_NAMES = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "webp": "WebP"}
# EXIF tag 0x0112, Orientation (EXIF 2.32 §4.6.4); 1 is upright.
_ORIENTATION = 0x0112


def _what(content_type: str) -> str:
    return f"the {_NAMES[content_type]} image"


@contextmanager
def _pillow_errors(content_type: str, max_pixels: int, *, quiet: bool = True) -> Iterator[None]:
    """Turn Pillow's failures into docvec's: a bomb is too large, anything else corrupt.

    Pillow raises many classes for damaged files (``UnidentifiedImageError``, ``OSError``
    "image file is truncated", ``SyntaxError`` "broken PNG file", ``ValueError``, ``EOFError``,
    ``struct.error``, ``zlib.error``...), so all but ``MemoryError`` and our own errors map to
    :class:`~app.errors.CorruptDocument`.

    Between its limit and twice it, Pillow only warns (``DecompressionBombWarning``); our own
    check on the header decides, so ``quiet`` silences the warning. It does so by changing the
    process's warning filters, which is safe only in a single-threaded process (the extraction
    child); the upload route passes False, and a warning that is raised as an error (tests run
    with ``filterwarnings=error``) counts as the bomb it warns of.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with contextlib.ExitStack() as stack:
            if quiet:
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            yield
    except (MemoryError, PermanentError):
        raise
    except UnidentifiedImageError as exc:
        # Its message names the file object (an address), not the problem.
        raise CorruptDocument(
            f"corrupt {_NAMES[content_type]} image: it starts like one, but Pillow cannot read "
            "its header",
            stage=STAGE,
        ) from exc
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise DocumentTooLarge(
            f"{_what(content_type)} is a decompression bomb ({explain(exc)}); the limit is "
            f"{max_pixels:,} pixels (DOCVEC_OCR__MAX_IMAGE_PIXELS)",
            stage=STAGE,
        ) from exc
    except Exception as exc:
        raise CorruptDocument(
            f"corrupt {_NAMES[content_type]} image: {explain(exc)}", stage=STAGE
        ) from exc


def _open(source: IO[bytes], content_type: str) -> Image:
    from PIL import Image as PILImage

    return PILImage.open(source, formats=[IMAGE_FORMATS[content_type]])


def _check_pixels(image: Image, content_type: str, page: int, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise CorruptDocument(
            f"corrupt {_NAMES[content_type]} image: page {page} is {width} x {height} pixels",
            stage=STAGE,
        )
    if width * height > max_pixels:
        raise DocumentTooLarge(
            f"{_what(content_type)} is {width:,} x {height:,} pixels (page {page}); the limit "
            f"is {max_pixels:,} pixels (DOCVEC_OCR__MAX_IMAGE_PIXELS)",
            stage=STAGE,
        )


def check_upload(file: IO[bytes], content_type: str, *, max_pixels: int) -> None:
    """Refuse an image upload whose first page is larger than ``max_pixels``, from its header.

    Reads only what Pillow needs to learn the size (the file position is restored). A header
    Pillow cannot read is let through: the extraction reports that document corrupt, with the
    reason, as it does for a damaged PDF.

    Args:
        file: the uploaded file, seekable.
        content_type: its sniffed type, a key of :data:`~app.pipeline.extract.IMAGE_TYPES`.
        max_pixels: ``ocr.max_image_pixels``.

    Raises:
        DocumentTooLarge: the header declares more pixels (the route answers 413).
    """
    position = file.tell()
    try:
        with (
            _pillow_errors(content_type, max_pixels, quiet=False),
            _open(file, content_type) as image,
        ):
            _check_pixels(image, content_type, 1, max_pixels)
    except CorruptDocument:
        return
    finally:
        file.seek(position)


def extract_image(
    data: bytes, content_type: str, *, max_chars: int, ocr: OcrOptions
) -> ExtractedText:
    """Read the text of an image by OCR, page by page (see the module docstring for the order).

    Args:
        data: the whole file.
        content_type: a key of :data:`~app.pipeline.extract.IMAGE_TYPES`.
        max_chars: longest text, characters after normalisation.
        ocr: the OCR options (``mode`` ``off`` refuses the image).

    Returns:
        The text, one page per TIFF page (else one), every page marked as OCR'd.

    Raises:
        OcrUnavailable: OCR is off, or Tesseract or a configured language's data is missing.
        DocumentTooLarge: more pages than ``ocr.max_pages``, a page over ``max_image_pixels``,
            a page's OCR over its time or memory limit, or text longer than ``max_chars``.
        CorruptDocument: the file does not decode (truncated, lying header, not the type its
            signature says).
        EmptyDocument: OCR found no text on any page.
    """
    what = _what(content_type)
    if ocr.mode == "off":
        raise OcrUnavailable(
            f"{what} can only be read by OCR, and OCR is off (DOCVEC_OCR__MODE=off)", stage=STAGE
        )
    engine = Tesseract(ocr)
    status = engine.status()
    if not status.available:
        raise OcrUnavailable(f"{what} can only be read by OCR: {status.reason}", stage=STAGE)
    parts: list[str] = []
    page_starts: list[int] = []
    page_numbers: list[int] = []
    offset = 0
    with (
        engine.timed(),
        _pillow_errors(content_type, ocr.max_image_pixels),
        _open(io.BytesIO(data), content_type) as image,
    ):
        page_count = _page_count(image, content_type, ocr.max_pages)
        for index in range(page_count):
            page = index + 1
            if index:
                image.seek(index)
            _check_pixels(image, content_type, page, ocr.max_image_pixels)
            image.load()
            upright = _upright(image, content_type)
            # The resolution in an image's header is often wrong (72 for a scan, 0); Tesseract
            # estimates its own from the height of the text.
            text = engine.read(upright, page=page, what=what, upscale_small=True)
            del upright
            if not text:
                continue
            if parts:
                offset += 2  # the "\n\n" that joins pages
            page_starts.append(offset)
            page_numbers.append(page)
            parts.append(text)
            offset += len(text)
            if offset > max_chars:
                raise DocumentTooLarge(
                    f"{what} has more than {max_chars:,} characters of text (passed at page "
                    f"{page}); the limit is {max_chars:,}",
                    stage=STAGE,
                )
    if not parts:
        raise EmptyDocument(
            f"no text, even after OCR: Tesseract ({ocr.languages}) found none in {what} "
            f"({page_count} page(s))",
            stage=STAGE,
        )
    return ExtractedText(
        text="\n\n".join(parts),
        page_starts=page_starts,
        page_numbers=page_numbers,
        page_count=page_count,
        content_type=content_type,
        ocr_pages=tuple(page_numbers),
        ocr_ms=round(engine.seconds * 1000, 2),
    )


def _page_count(image: Image, content_type: str, max_pages: int) -> int:
    """A TIFF's pages, counted by seeking through its directories (each seek reads one), at most
    ``max_pages + 1``; 1 for every other type."""
    if content_type != "tiff":
        return 1
    count = 1
    try:
        while True:
            image.seek(count)
            count += 1
            if count > max_pages:
                raise DocumentTooLarge(
                    f"the TIFF image has more than {max_pages} pages; OCR reads at most "
                    f"{max_pages} per document (DOCVEC_OCR__MAX_PAGES)",
                    stage=STAGE,
                )
    except EOFError:
        pass
    image.seek(0)
    return count


def _upright(image: Image, content_type: str) -> Image:
    """The page turned as its EXIF orientation says (phone photos), else as it is."""
    if content_type == "png":
        return image
    orientation = image.getexif().get(_ORIENTATION, 1)
    if orientation in (None, 1):
        return image
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)
