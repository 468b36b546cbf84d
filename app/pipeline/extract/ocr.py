"""OCR: the text of page images, read by Tesseract in a subprocess bounded in time and memory.

The PDF reader (``pdf.py``) calls it for pages whose text layer is empty, the image reader
(``images.py``) for every page of an image upload; :func:`ocr_status` tells ``docvec providers``
and ``GET /status`` whether it can run here, and why not.

Why Tesseract, run as a program: measured on this machine (README, OCR) it read rendered corpus
text far better and several times faster than RapidOCR, the PyPI engine whose models ship inside
its wheel; it installs from the distribution's packages with data for 100+ languages; and a
program can be bounded. Each page is one ``tesseract`` process that

- is killed after ``page_timeout_s`` of wall-clock time (never more than the extraction budget),
- may map at most the extraction budget's memory (``RLIMIT_AS``, set in the child before exec),
- is killed by the kernel if the extraction child that started it dies first
  (``PR_SET_PDEATHSIG``), so a page never outlives the budget that paid for it,
- runs one OpenMP thread (``OMP_THREAD_LIMIT=1``): measured here, a second thread made a page no
  faster, and the workers' pool processes already share the cores.

pytesseract wraps the same program but leaves no place for the memory limit and the death signal,
so docvec calls it directly. Tesseract reads the page from stdin as a PGM that Pillow wrote here,
never the uploaded bytes: given something that is not an image, Tesseract takes its input for a
list of file names to open.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import io
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from app.errors import CorruptDocument, DocumentTooLarge, OcrUnavailable
from app.pipeline.extract.base import STAGE, shorten
from app.pipeline.extract.normalize import normalize_text

if TYPE_CHECKING:
    from PIL.Image import Image

    from app.config import Settings

__all__ = [
    "ENGINE",
    "OcrMode",
    "OcrOptions",
    "OcrStatus",
    "Tesseract",
    "grayscale",
    "ocr_status",
    "visible_chars",
]

OcrMode = Literal["auto", "off", "force"]

#: Name of the engine in status reports and on ``ExtractedText``.
ENGINE = "tesseract"

_MIB = 1024 * 1024
_PR_SET_PDEATHSIG = 1
# Seconds for `tesseract --version` / `--list-langs`: they print and exit in tens of ms.
_PROBE_TIMEOUT_S = 10.0
# Page segmentation mode 3, "fully automatic page segmentation" (Tesseract's own default), spelled
# out so that a tesseract config file on the machine cannot change it.
_PSM = "3"
# Our heuristic, not Tesseract's: pictures without text come back as a stray letter or a few
# marks ("|", "~", "e"); text with fewer letters and digits than this is no text.
_MIN_ALNUM = 3
# A resolution outside this range is not passed on (a huge PDF page rendered at a few dpi to stay
# within the pixel limit); Tesseract then estimates its own from the height of the text.
_DPI_RANGE = (70, 2400)
# Images below this many pixels (a screenshot, a small photo) are read at twice their size:
# Tesseract misreads text only a dozen pixels high (measured: README, OCR); a scan or a phone
# photo is larger than this.
UPSCALE_BELOW_PIXELS = 2_500_000


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """How one document is OCR'd (picklable: it travels to the extraction child).

    Attributes:
        mode: ``auto`` (images, and PDF pages without text), ``force`` (every PDF page), ``off``.
        languages: Tesseract languages joined with ``+`` (``eng``, ``eng+deu``).
        dpi: resolution at which PDF pages are rendered, dots per inch.
        page_timeout_s: wall-clock seconds one page's OCR may take.
        min_page_chars: a PDF page with fewer non-whitespace characters of text is OCR'd.
        max_pages: most pages OCR'd in one document.
        max_image_pixels: most pixels of one page image (width x height).
        memory_mb: MiB Tesseract may map (``RLIMIT_AS``): the extraction budget's figure.
        tesseract_cmd: the program, a name on ``PATH`` or a path.

    Defaults equal :class:`app.config.OcrSettings`'s (where each is explained).
    """

    mode: OcrMode = "auto"
    languages: str = "eng"
    dpi: int = 200
    page_timeout_s: float = 60.0
    min_page_chars: int = 20
    max_pages: int = 50
    max_image_pixels: int = 89_478_485
    memory_mb: int = 2048
    tesseract_cmd: str = "tesseract"

    @classmethod
    def from_settings(cls, settings: Settings) -> OcrOptions:
        """The options of ``settings.ocr``, the page limit capped at ``extract_timeout_s`` and
        the memory limit taken from ``extract_memory_mb``."""
        ocr = settings.ocr
        return cls(
            mode=ocr.mode,
            languages=ocr.languages,
            dpi=ocr.dpi,
            page_timeout_s=min(ocr.page_timeout_s, settings.extract_timeout_s),
            min_page_chars=ocr.min_page_chars,
            max_pages=ocr.max_pages,
            max_image_pixels=ocr.max_image_pixels,
            memory_mb=settings.extract_memory_mb,
            tesseract_cmd=ocr.tesseract_cmd,
        )

    @property
    def language_list(self) -> tuple[str, ...]:
        """The configured languages, one per entry."""
        return tuple(self.languages.split("+"))


@dataclass(frozen=True, slots=True)
class OcrStatus:
    """Whether OCR can run here, and with what (``docvec providers``, ``GET /status``).

    Attributes:
        available: True when the program runs and has data for every configured language (and
            ``mode`` is not ``off``).
        reason: why not, with the remedy; None when available.
        mode: the configured mode.
        version: Tesseract's version (``5.3.0``), None when it could not be run.
        command: the program's resolved path, None when not found.
        languages: the configured languages.
        installed_languages: the languages Tesseract has data for.
        dpi: the PDF render resolution in force.
    """

    available: bool
    reason: str | None
    mode: str
    version: str | None
    command: str | None
    languages: tuple[str, ...]
    installed_languages: tuple[str, ...]
    dpi: int
    engine: str = ENGINE

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping of every field."""
        return {
            "engine": self.engine,
            "available": self.available,
            "reason": self.reason,
            "mode": self.mode,
            "version": self.version,
            "command": self.command,
            "languages": list(self.languages),
            "installed_languages": list(self.installed_languages),
            "dpi": self.dpi,
        }


def _debian_package(language: str) -> str:
    # Debian names language data tesseract-ocr-<lang>, with "_" as "-" (chi_sim -> chi-sim).
    return "tesseract-ocr-" + language.lower().replace("_", "-")


def ocr_status(options: OcrOptions) -> OcrStatus:
    """Probe the Tesseract program: found, its version, its languages, the configured ones there.

    Runs ``tesseract --version`` and ``tesseract --list-langs`` (tens of milliseconds each); never
    raises.
    """
    languages = options.language_list

    def status(
        reason: str | None,
        command: str | None = None,
        version: str | None = None,
        installed: tuple[str, ...] = (),
    ) -> OcrStatus:
        return OcrStatus(
            available=reason is None,
            reason=reason,
            mode=options.mode,
            version=version,
            command=command,
            languages=languages,
            installed_languages=installed,
            dpi=options.dpi,
        )

    command = shutil.which(options.tesseract_cmd)
    if command is None:
        return status(
            f"the Tesseract program '{options.tesseract_cmd}' was not found (Debian: apt-get "
            "install tesseract-ocr tesseract-ocr-eng, as `make setup` does; or point "
            "DOCVEC_OCR__TESSERACT_CMD at it)"
        )
    try:
        version = _version(command)
        installed = tuple(sorted(_installed_languages(command)))
    except (OSError, subprocess.SubprocessError) as exc:
        return status(f"the Tesseract program {command} does not run: {shorten(str(exc))}", command)
    missing = [lang for lang in languages if lang not in installed]
    if missing:
        packages = " ".join(_debian_package(lang) for lang in missing)
        return status(
            f"Tesseract has no language data for {', '.join(missing)} (Debian: apt-get install "
            f"{packages}; or change DOCVEC_OCR__LANGUAGES)",
            command,
            version,
            installed,
        )
    if options.mode == "off":
        return status("OCR is off (DOCVEC_OCR__MODE=off)", command, version, installed)
    return status(None, command, version, installed)


def _probe(command: str, flag: str) -> str:
    done = subprocess.run(
        [command, flag], capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False, env=_env()
    )
    if done.returncode != 0:
        raise subprocess.SubprocessError(
            f"`{os.path.basename(command)} {flag}` exited with status {done.returncode}: "
            + done.stderr.decode("utf-8", "replace")
        )
    # Tesseract 3 and 4.0 printed both to stderr, later versions to stdout.
    return (done.stdout + b"\n" + done.stderr).decode("utf-8", "replace")


def _version(command: str) -> str | None:
    match = re.search(r"tesseract\s+v?(\d[\w.\-]*)", _probe(command, "--version"), re.IGNORECASE)
    return match.group(1) if match else None


def _installed_languages(command: str) -> set[str]:
    lines = _probe(command, "--list-langs").splitlines()
    # The first line is "List of available languages in "<dir>" (N):"; the rest are names.
    return {line.strip() for line in lines if line.strip() and not line.startswith("List of")}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def visible_chars(text: str) -> int:
    """Characters of ``text`` that are not whitespace."""
    return len(text) - sum(1 for ch in text if ch.isspace())


def grayscale(image: Image) -> Image:
    """``image`` as 8-bit grayscale (mode ``L``) on white, the form Tesseract reads best.

    Transparent pixels become white (a screenshot's or a logo's background), 16-bit samples are
    scaled to 8 bits rather than clipped, every other mode goes through RGB.
    """
    from PIL import Image as PILImage

    mode = image.mode
    if mode == "L":
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode == "I":
        # convert("L") clips 16-bit samples at 255, which turns a 16-bit scan white.
        scale = 1 / 256 if mode.startswith("I;16") else 1.0
        return image.convert("I").point(lambda v: v * scale).convert("L")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("L")
    return image.convert("RGB").convert("L")


@dataclass
class Tesseract:
    """One document's use of Tesseract: probes the program once, then reads page after page.

    Attributes:
        options: the document's OCR options.
        pages: pages read so far (each is counted against ``options.max_pages``).
        seconds: wall-clock seconds spent in OCR so far: rendering and decoding included, where
            the caller wraps them in :meth:`timed`.
    """

    options: OcrOptions
    pages: int = 0
    seconds: float = 0.0
    _status: OcrStatus | None = field(default=None, repr=False)

    def status(self) -> OcrStatus:
        """The engine's status, probed on first use."""
        if self._status is None:
            self._status = ocr_status(self.options)
        return self._status

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Count the time of the block in :attr:`seconds`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def _admit(self, page: int, what: str) -> None:
        """Count one more page to OCR.

        Raises:
            DocumentTooLarge: it would be page ``max_pages + 1`` of OCR in this document.
        """
        if self.pages >= self.options.max_pages:
            raise DocumentTooLarge(
                f"{what} needs OCR on more than {self.options.max_pages} pages (page {page} would "
                f"be number {self.pages + 1}); the limit is DOCVEC_OCR__MAX_PAGES="
                f"{self.options.max_pages}",
                stage=STAGE,
            )
        self.pages += 1

    def read(
        self,
        image: Image,
        *,
        page: int,
        what: str = "the document",
        dpi: float | None = None,
        upscale_small: bool = False,
    ) -> str:
        """OCR one page image; a page of one colour (blank) is not sent to Tesseract and not
        counted against ``max_pages``.

        Args:
            image: the page, any Pillow mode (converted with :func:`grayscale`).
            page: 1-based page number, for messages.
            what: the document in words, for messages ("the PDF", "the TIFF image").
            dpi: the image's resolution if known (a rendered PDF page's), else None: Tesseract
                then estimates it from the text.
            upscale_small: read an image of fewer than :data:`UPSCALE_BELOW_PIXELS` pixels at
                twice its size (uploads; a PDF page is rendered at the resolution asked for).

        Returns:
            The page's text, normalised; ``""`` when Tesseract read no text worth keeping.

        Raises:
            OcrUnavailable: the program is missing or lacks a configured language.
            DocumentTooLarge: the page would be OCR page ``max_pages + 1`` of the document, or
                took longer than ``page_timeout_s``, or needed more than ``memory_mb``.
            CorruptDocument: Tesseract failed on the page otherwise.
        """
        status = self.status()
        if not status.available or status.command is None:
            raise OcrUnavailable(f"OCR is unavailable: {status.reason}", stage=STAGE)
        gray = grayscale(image)
        low, high = gray.getextrema()
        if low == high:  # blank: a separator page, an empty scan
            return ""
        self._admit(page, what)
        if upscale_small and gray.width * gray.height < UPSCALE_BELOW_PIXELS:
            from PIL import Image as PILImage

            gray = gray.resize((gray.width * 2, gray.height * 2), PILImage.Resampling.LANCZOS)
            dpi = None if dpi is None else dpi * 2
        buffer = io.BytesIO()
        gray.save(buffer, format="PPM")  # mode L: a binary PGM, fast to write and to read
        del gray
        raw = self._run(status.command, buffer.getvalue(), page=page, dpi=dpi)
        text = normalize_text(raw)
        if sum(1 for ch in text if ch.isalnum()) < _MIN_ALNUM:
            return ""
        return text

    def _run(self, command: str, pgm: bytes, *, page: int, dpi: float | None) -> str:
        options = self.options
        args = [command, "stdin", "stdout", "-l", options.languages, "--psm", _PSM]
        if dpi is not None and _DPI_RANGE[0] <= dpi <= _DPI_RANGE[1]:
            args += ["--dpi", str(round(dpi))]
        timeout = options.page_timeout_s
        try:
            done = subprocess.run(
                args,
                input=pgm,
                capture_output=True,
                timeout=timeout,
                check=False,
                env=_env(),
                preexec_fn=_child_setup(options.memory_mb),
            )
        except subprocess.TimeoutExpired as exc:
            raise DocumentTooLarge(
                f"OCR of page {page} took longer than {timeout:g} s "
                "(DOCVEC_OCR__PAGE_TIMEOUT_S); the page is too large or too complex to read",
                stage=STAGE,
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ENOMEM:  # fork or exec under the memory limit
                raise DocumentTooLarge(
                    f"OCR of page {page} could not start within {options.memory_mb} MiB of memory",
                    stage=STAGE,
                ) from exc
            raise OcrUnavailable(
                f"OCR is unavailable: Tesseract could not be started ({shorten(str(exc))})",
                stage=STAGE,
            ) from exc
        if done.returncode != 0:
            raise _failure(done.returncode, done.stderr, page=page, memory_mb=options.memory_mb)
        return done.stdout.decode("utf-8", errors="replace")


def _failure(
    code: int, stderr: bytes, *, page: int, memory_mb: int
) -> DocumentTooLarge | CorruptDocument:
    """The error for a ``tesseract`` run that exited with ``code``."""
    message = stderr.decode("utf-8", errors="replace")
    # std::bad_alloc, leptonica's "pix_malloc fail", and the loader's "failed to map segment"
    # when the limit leaves no room even for the program's libraries.
    if any(sign in message.lower() for sign in ("alloc", "failed to map", "out of memory")):
        return DocumentTooLarge(
            f"OCR of page {page} needed more than {memory_mb} MiB of memory; the page is too "
            "large to read",
            stage=STAGE,
        )
    lines = [line for line in message.splitlines() if line.strip()]
    detail = shorten(lines[-1]) if lines else "no message"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return CorruptDocument(f"OCR crashed on page {page} ({name}: {detail})", stage=STAGE)
    return CorruptDocument(f"OCR failed on page {page}: {detail}", stage=STAGE)


_PRCTL: Callable[..., int] | None = None
_PRCTL_LOADED = False


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once in this process (not in the child before exec, where
    nothing but async-signal-safe work belongs); None where there is none (not Linux)."""
    global _PRCTL, _PRCTL_LOADED
    if not _PRCTL_LOADED:
        _PRCTL_LOADED = True
        name = ctypes.util.find_library("c")
        if name is not None:
            with contextlib.suppress(OSError, AttributeError):
                _PRCTL = ctypes.CDLL(name, use_errno=True).prctl
    return _PRCTL


def _child_setup(memory_mb: int) -> Callable[[], None] | None:
    """What the ``tesseract`` child does between fork and exec: die with its parent, and map at
    most ``memory_mb`` MiB.

    Python's documentation warns that code run there is unsafe while the parent has other
    threads (a lock held by one of them stays held in the child). The extraction child, where
    OCR normally runs (app/pipeline/budget.py), has a single thread; elsewhere (a direct call of
    :func:`~app.pipeline.extract.extract`, or a platform without ``fork``) the page runs without
    these two limits, bounded still by its wall-clock timeout.
    """
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return None
    prctl = _prctl()
    limit = memory_mb * _MIB

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

    return setup
