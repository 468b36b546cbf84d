"""Images found by what they show, through the HTTP API and the pipeline in embedded mode
(SQLite, Qdrant Edge, the real local text model, real OCR): image uploads get image vectors in the
index version's image collection, text queries are embedded by the image model and searched
there, and the text and image rankings are fused by RRF, every hit saying which side found it.

The image model is a deterministic test model whose vectors agree by construction — a picture's
dominant colour and a query's colour words (tests/embeddings/images.py) — so "red" must find the
red picture first. The same runs without an image model: the images are then OCR'd and found by
their text only, and one without text fails as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import indexes, services
from app.api.main import create_app
from app.config import ImageEmbeddingSettings, Settings
from app.db import migrate
from app.errors import IndexMismatch
from app.pipeline.build import run_build
from app.pipeline.process import process_document
from app.runtime import Runtime
from app.vectorstore import RRF_K, Point, image_point_id
from tests.embeddings.images import (
    TINY_CLIP_DIM,
    ColourImageProvider,
    build_tiny_clip,
    png,
)
from tests.pipeline.test_ocr import TESSERACT

pytestmark = pytest.mark.skipif(TESSERACT is None, reason="Tesseract is not installed")

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (20, 40, 230)
#: A pale red page with big black words: OCR reads them, and its colour is still red.
INVOICE = png((250, 150, 150), size=(560, 110), text="INVOICE TOTAL")
FILES = {
    "red.png": png(RED),
    "green.png": png(GREEN),
    "blue.png": png(BLUE),
    "invoice.png": INVOICE,
    "notes.txt": b"The red car was parked beside the bakery on Tuesday morning.\n",
}
COLOURS = ImageEmbeddingSettings(provider="local", model="colours")


def _runtime(data: Path, local_provider: Any, image: ImageEmbeddingSettings | None) -> Runtime:
    settings = Settings(
        _env_file=None,
        data_dir=data,
        image_embedding=image or ImageEmbeddingSettings(),
    )
    migrate.upgrade(settings.sqlalchemy_url)
    provider = ColourImageProvider(image) if image is not None else None
    return Runtime(settings, provider=local_provider, image_provider=provider)


def _client(rt: Runtime) -> TestClient:
    def enqueue(doc_id: uuid.UUID, generation: int) -> None:
        process_document(rt, doc_id, generation)

    return TestClient(create_app(rt.settings, runtime=rt, enqueue=enqueue))


def _upload(client: TestClient, files: dict[str, bytes]) -> tuple[str, dict[str, str]]:
    r = client.post("/projects", json={"name": "shop"})
    assert r.status_code == 201, r.text
    pid = str(r.json()["id"])
    r = client.post(
        f"/projects/{pid}/documents",
        files=[("files", (n, d, "application/octet-stream")) for n, d in files.items()],
    )
    assert r.status_code == 202, r.text
    return pid, {d["file_name"]: d["id"] for d in r.json()["documents"]}


def _search(client: TestClient, pid: str, query: str, **body: Any) -> list[dict[str, Any]]:
    r = client.post(f"/projects/{pid}/search", json={"query": query, "top_k": 10, **body})
    assert r.status_code == 200, r.text
    return list(r.json()["results"])


@pytest.fixture(scope="module")
def shop(
    tmp_path_factory: pytest.TempPathFactory, local_provider: Any
) -> Iterator[tuple[TestClient, Runtime, str, dict[str, str]]]:
    rt = _runtime(tmp_path_factory.mktemp("shop") / "data", local_provider, COLOURS)
    with _client(rt) as client:
        pid, ids = _upload(client, FILES)
        yield client, rt, pid, ids
    rt.close()


def test_images_are_vectorized_by_what_they_show(
    shop: tuple[TestClient, Runtime, str, dict[str, str]],
) -> None:
    client, rt, pid, ids = shop
    docs = {n: client.get(f"/documents/{i}").json() for n, i in ids.items()}
    assert {n: d["status"] for n, d in docs.items()} == dict.fromkeys(FILES, "vectorized")
    # No text in a plain picture: no chunks, yet vectorized — it is found by what it shows.
    for name in ("red.png", "green.png", "blue.png"):
        assert docs[name]["chunk_count"] == 0 and docs[name]["page_count"] == 1
    assert docs["invoice.png"]["chunk_count"] >= 1
    timings = docs["red.png"]["attempts"][-1]["timings_ms"]
    assert timings["embed_images"] >= 0
    # One image point per picture, in the version's image collection, none for the text file.
    with rt.sessions() as s:
        index = rt.active_index(s, services.get_project(s, uuid.UUID(pid)))
    assert index.images is not None
    assert index.images.store.collection == "docvec_chunks_images"
    assert index.images.store.count(project_id=uuid.UUID(pid)) == 4
    expected = {image_point_id(uuid.UUID(ids[n]), 0) for n in FILES if n.endswith(".png")}
    assert index.images.store.point_ids() == expected
    assert index.version.spec.embedding["image_model"] == "colours"


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
@pytest.mark.parametrize(
    ("query", "picture"), [("red", "red.png"), ("green", "green.png"), ("blue", "blue.png")]
)
def test_a_colour_finds_its_picture_first(
    shop: tuple[TestClient, Runtime, str, dict[str, str]], mode: str, query: str, picture: str
) -> None:
    client, _, pid, ids = shop
    hits = _search(client, pid, query, mode=mode)
    # First in the image ranking, and before every other picture found only by what it shows
    # (the invoice, found by its text too, may be fused above it: RRF adds both sides).
    first = next(h for h in hits if h["image_rank"] == 1)
    assert first["document_id"] == ids[picture], hits
    only_images = [h["document_id"] for h in hits if h["matched"] == ["image"]]
    assert only_images[0] == ids[picture] and len(only_images) >= 2
    assert first["matched"] == ["image"]
    assert first["page"] == 1 and first["chunk_index"] is None and first["text"] == ""
    assert first["score"] == pytest.approx(1 / (RRF_K + 1))
    assert first["image_score"] > 0.9
    # Every hit says which side(s) found it, and its score is the fused one.
    for h in hits:
        assert h["matched"], h
        ranks = [h[f"{side}_rank"] for side in h["matched"]]
        assert h["score"] == pytest.approx(sum(1 / (RRF_K + r) for r in ranks))
        for side in ("dense", "lexical", "image"):
            assert (h[f"{side}_rank"] is not None) == (side in h["matched"])


def test_text_and_picture_of_one_page_fuse_into_one_hit(
    shop: tuple[TestClient, Runtime, str, dict[str, str]],
) -> None:
    client, _, pid, ids = shop
    hits = _search(client, pid, "red invoice total", mode="hybrid")
    top = hits[0]
    # The invoice's page: its OCR'd words (dense and BM25) and its red picture, one hit.
    assert top["document_id"] == ids["invoice.png"], hits
    assert top["matched"] == ["dense", "lexical", "image"]
    assert "INVOICE" in top["text"].upper() and top["chunk_index"] == 0 and top["page"] == 1
    assert len([h for h in hits if h["document_id"] == ids["invoice.png"]]) == 1
    # The red car of the text file is found by its words only.
    notes = next(h for h in hits if h["document_id"] == ids["notes.txt"])
    assert "image" not in notes["matched"] and "dense" in notes["matched"]


def test_lexical_mode_and_images_off_leave_the_text_search_as_it_was(
    shop: tuple[TestClient, Runtime, str, dict[str, str]],
) -> None:
    client, _, pid, ids = shop
    lexical = _search(client, pid, "red car", mode="lexical")
    assert [h["document_id"] for h in lexical] == [ids["notes.txt"]]
    assert lexical[0]["matched"] == ["lexical"]
    dense = _search(client, pid, "red car", mode="dense", images=False)
    assert all(h["matched"] == ["dense"] and h["image_rank"] is None for h in dense)
    assert dense[0]["document_id"] == ids["notes.txt"]
    assert -1 <= dense[0]["score"] <= 1 and dense[0]["score"] == dense[0]["dense_score"]


def test_delete_reconcile_and_repair_reach_the_image_collection(
    tmp_path: Path, local_provider: Any
) -> None:
    rt = _runtime(tmp_path / "data", local_provider, COLOURS)
    with _client(rt) as client:
        pid, ids = _upload(client, {n: FILES[n] for n in ("red.png", "green.png", "notes.txt")})
        with rt.sessions() as s:
            images = rt.active_index(s, services.get_project(s, uuid.UUID(pid))).images
        assert images is not None and images.store.count() == 2

        def report() -> services.ReconcileReport:
            with rt.sessions() as s:
                found = services.reconcile_all(s, store_for=rt.store_for)
            assert {store.collection for store, _ in found} == {
                "docvec_chunks",
                "docvec_chunks_images",
            }
            return services.ReconcileReport.merged([r for _, r in found])

        assert report().clean
        red, green = uuid.UUID(ids["red.png"]), uuid.UUID(ids["green.png"])
        # A lost image point and a stray one are both seen ...
        images.store.delete_points([image_point_id(green, 0)])
        stray = image_point_id(uuid.uuid4(), 0)
        images.store.upsert(
            [Point(stray, [1.0, 0, 0, 0], uuid.UUID(pid), uuid.uuid4(), 0, "gone.png")]
        )
        drift = report()
        assert drift.orphan_points == {stray} and drift.missing_points == {green: 1}
        # ... and repaired: the stray deleted, the document vectorized again.
        with rt.sessions() as s:
            found = services.reconcile_all(s, store_for=rt.store_for)
            jobs = [j for store, r in found for j in services.repair(s, store=store, report=r)]
            s.commit()
        assert [d for d, _ in jobs] == [green]
        for doc_id, generation in jobs:
            process_document(rt, doc_id, generation)
        assert report().clean and images.store.count() == 2

        # A delete reaches the image collection, and so does a project's.
        assert client.delete(f"/documents/{red}").status_code == 204
        assert images.store.point_ids() == {image_point_id(green, 0)}
        assert client.delete(f"/projects/{pid}").status_code == 204
        assert images.store.count() == 0
    rt.close()


def test_without_an_image_model_images_are_found_by_their_text(
    tmp_path: Path, local_provider: Any
) -> None:
    rt = _runtime(tmp_path / "data", local_provider, None)
    with _client(rt) as client:
        pid, ids = _upload(client, {n: FILES[n] for n in ("red.png", "invoice.png")})
        red = client.get(f"/documents/{ids['red.png']}").json()
        assert red["status"] == "failed" and red["error"].startswith("no text, even after OCR")
        invoice = client.get(f"/documents/{ids['invoice.png']}").json()
        assert invoice["status"] == "vectorized" and invoice["chunk_count"] >= 1
        chunks = client.get(f"/documents/{ids['invoice.png']}/chunks").json()["items"]
        assert all(c["ocr"] for c in chunks)
        hits = _search(client, pid, "invoice total", mode="hybrid")
        assert hits[0]["document_id"] == ids["invoice.png"]
        assert hits[0]["matched"] == ["dense", "lexical"] and hits[0]["image_rank"] is None
        # The status lists the image providers, none configured, each with why it cannot run.
        status = client.get("/status", params={"probe": "none"}).json()
        assert status["configured_image_provider"] == "none"
        listed = {p["provider"]: p for p in status["image_providers"]}
        assert set(listed) == {"local", "gemini", "cohere"}
        assert not any(p["configured"] for p in listed.values())
        assert "DOCVEC_IMAGE_EMBEDDING__MODEL_PATH" in listed["local"]["reason"]
        with rt.sessions() as s:
            assert rt.active_index(s, services.get_project(s, uuid.UUID(pid))).images is None
    rt.close()


def test_a_new_image_model_is_a_new_index_version(tmp_path: Path, local_provider: Any) -> None:
    """The seed report's move to another image model of another size: refused in place, built
    beside the live version (its image vectors too), then active."""
    rt = _runtime(tmp_path / "data", local_provider, COLOURS)
    with _client(rt) as client:
        pid, ids = _upload(client, {n: FILES[n] for n in ("red.png", "invoice.png")})
    project_id = uuid.UUID(pid)

    # A process whose settings name another image model refuses the live version.
    other = rt.settings.model_copy(
        update={"image_embedding": ImageEmbeddingSettings(provider="local", model="colours-v2")}
    )
    with rt.sessions() as s:
        ref = indexes.active_version(s, services.get_project(s, project_id), rt.settings)
        with pytest.raises(IndexMismatch, match="image_model: 'colours' -> 'colours-v2'"):
            indexes.check_settings(ref, other)

    # A version with the tiny CLIP (24 dimensions instead of 4), built from what SQL holds.
    clip = build_tiny_clip(tmp_path / "tiny-clip")
    spec, follows = indexes.spec_for(
        rt.settings, image_provider="local", image_model="tiny-clip", image_model_path=str(clip)
    )
    assert not follows and spec.embedding["image_model"] == "tiny-clip"
    with rt.sessions() as s:
        row = indexes.create_version(
            s,
            project=services.get_project(s, project_id),
            spec=spec,
            settings=rt.settings,
            follows_settings=False,
        )
        version_id, collection = row.id, row.collection
        s.commit()
    result = run_build(rt, version_id, keep_versions=1)
    assert result.state == "active" and result.failed == 0, result
    new_images = rt.store_for(indexes.image_collection(collection))
    assert new_images.point_ids() == {
        image_point_id(uuid.UUID(ids[n]), 0) for n in ("red.png", "invoice.png")
    }
    with rt.sessions() as s:
        index = rt.active_index(s, services.get_project(s, project_id))
        assert index.images is not None and index.images.ensure() == TINY_CLIP_DIM
        hits = rt.search(
            s, project=services.get_project(s, project_id), query="red", mode="dense", images=True
        )
    assert {h.document_id for h in hits if "image" in h.matched} == {
        uuid.UUID(ids["red.png"]),
        uuid.UUID(ids["invoice.png"]),
    }
    rt.close()
