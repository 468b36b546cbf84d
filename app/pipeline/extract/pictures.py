"""Pictures of an image upload's pages, for the image embedding model (app/embeddings/images/).

When the index has an image model, the extraction child — inside the same time and memory budget
as OCR, with the same guards (:mod:`app.pipeline.extract.images`: the type the signature says,
the page count, the pixel limit, decoding errors) — also makes one small picture per page: upright
(EXIF orientation), transparency on white, 16-bit samples scaled to 8 bits, shrunk so that its
longer side is at most ``max_side`` pixels, encoded as PNG. The parent process and the providers
only ever see these PNGs that docvec wrote, never the uploaded bytes.

An image in which OCR finds no text is then not an empty document: it is found by what it shows,
with no chunks (its ``text`` is empty).
"""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING

from app.errors import EmptyDocument
from app.pipeline.extract.base import ExtractedText
from app.pipeline.extract.detect import IMAGE_TYPES, detect_type
from app.pipeline.extract.images import (
    _check_pixels,
    _open,
    _page_count,
    _pillow_errors,
    _upright,
    extract_image,
)
from app.pipeline.extract.ocr import OcrOptions

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["extract_image_with_pictures", "page_pictures", "picture_of", "pictures_of_file"]


def picture_of(page: Image, max_side: int) -> bytes:
    """``page`` as an RGB PNG whose longer side is at most ``max_side`` pixels (never enlarged):
    transparent pixels on white, 16-bit samples scaled rather than clipped."""
    from PIL import Image as PILImage

    mode = page.mode
    if mode.startswith("I;16") or mode == "I":
        scale = 1 / 256 if mode.startswith("I;16") else 1.0
        picture = page.convert("I").point(lambda v: v * scale).convert("L").convert("RGB")
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in page.info
    ):
        rgba = page.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        picture = white.convert("RGB")
    else:
        picture = page.convert("RGB")
    # Shrinking first on the (possibly huge) page would be faster, but reduce() needs RGB/L.
    picture.thumbnail((max_side, max_side), PILImage.Resampling.BICUBIC)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=False)
    return out.getvalue()


def page_pictures(
    data: bytes, content_type: str, *, max_side: int, max_pixels: int, max_pages: int
) -> tuple[bytes, ...]:
    """One PNG per page of an image upload (a TIFF's pages; one for the other types), each at
    most ``max_side`` pixels a side.

    Raises:
        DocumentTooLarge: more than ``max_pages`` pages, or a page over ``max_pixels``.
        CorruptDocument: the file does not decode.
    """
    pictures: list[bytes] = []
    with (
        _pillow_errors(content_type, max_pixels),
        _open(io.BytesIO(data), content_type) as image,
    ):
        count = _page_count(image, content_type, max_pages)
        for index in range(count):
            if index:
                image.seek(index)
            _check_pixels(image, content_type, index + 1, max_pixels)
            if content_type == "jpeg":
                # JPEG decodes at 1/2, 1/4 or 1/8 scale directly: a 12-megapixel photo pictured
                # at 768 pixels is read in a fraction of the time (README, Images).
                image.draft("RGB", (max_side, max_side))
            image.load()
            pictures.append(picture_of(_upright(image, content_type), max_side))
    return tuple(pictures)


def extract_image_with_pictures(
    data: bytes, content_type: str, *, max_chars: int, ocr: OcrOptions, max_side: int
) -> ExtractedText:
    """An image upload's OCR text (:func:`~app.pipeline.extract.images.extract_image`) and its
    page pictures; an image without text has empty ``text`` instead of failing.

    Raises:
        what :func:`~app.pipeline.extract.images.extract_image` raises, but EmptyDocument.
    """
    pictures = page_pictures(
        data,
        content_type,
        max_side=max_side,
        max_pixels=ocr.max_image_pixels,
        max_pages=ocr.max_pages,
    )
    try:
        extracted = extract_image(data, content_type, max_chars=max_chars, ocr=ocr)
    except EmptyDocument:
        # No text to read: the document is found by what it shows.
        extracted = ExtractedText(
            text="",
            page_starts=[],
            page_numbers=[],
            page_count=len(pictures),
            content_type=content_type,
        )
    return dataclasses.replace(extracted, page_pictures=pictures)


def pictures_of_file(
    data: bytes, file_name: str, *, max_side: int, max_pixels: int, max_pages: int
) -> tuple[bytes, ...]:
    """The page pictures of a stored file if it is an image upload, else ``()``: what an index
    version's build needs of an image document whose text it takes from SQL (no OCR).

    Raises:
        the errors of :func:`page_pictures`, and UnsupportedFormat for a file of no known type.
    """
    content_type = detect_type(data[:4096], file_name)
    if content_type not in IMAGE_TYPES:
        return ()
    return page_pictures(
        data, content_type, max_side=max_side, max_pixels=max_pixels, max_pages=max_pages
    )
