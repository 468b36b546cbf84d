"""``docvec eval`` on a small BEIR-format set built from the real corpus (tests/search/beir_small).

The metrics eval reports must be the ones computed here, by hand from their definitions, for the
ranking that ``services.search`` gives each query; a second run must reuse the ingested project.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from app import evaluation, services
from app.runtime import Runtime
from app.vectorstore import SEARCH_MODES
from tests.search import beir_small


@pytest.fixture(scope="module")
def dataset(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("beir-small")
    beir_small.build(corpus, folder)
    return folder


def _by_hand(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """The four metrics from their definitions, for binary judgments."""
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "map@100": 0.0}
    for q, judged in qrels.items():
        relevant = {d for d, grade in judged.items() if grade > 0}
        ranked = list(rankings.get(q, []))
        ranks = [i + 1 for i, d in enumerate(ranked[:100]) if d in relevant]
        dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= 10)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
        totals["ndcg@10"] += dcg / ideal
        totals["recall@100"] += len(ranks) / len(relevant)
        totals["mrr@10"] += 1 / ranks[0] if ranks and ranks[0] <= 10 else 0.0
        totals["map@100"] += sum((n + 1) / r for n, r in enumerate(ranks)) / len(relevant)
    return {k: v / len(qrels) for k, v in totals.items()}


def test_eval_reports_the_metrics_of_the_search_ranking(rt: Runtime, dataset: Path) -> None:
    report = evaluation.run_eval(rt, dataset, split="test", references=True)

    data = evaluation.load_beir(dataset, "test")
    assert report.queries == len(data.queries) == 20  # the unjudged query is left out
    assert report.ingest.documents == 20 and report.ingest.vectorized_now == 20
    assert report.ingest.failed == 0 and report.ingest.chunks >= 20
    assert 0 < report.ingest.pipeline_seconds <= report.ingest.seconds
    assert set(report.modes) == set(SEARCH_MODES)

    # The ranking of each query is the document order of the search call itself.
    with rt.sessions() as s:
        project = services.find_project(s, report.project)
        for mode in SEARCH_MODES:
            for qid, text in list(data.queries.items())[:5]:
                hits = services.search(
                    s,
                    project=project,
                    query=text,
                    provider=rt.provider,
                    store=rt.vector_store,
                    top_k=evaluation.CHUNK_DEPTH,
                    mode=mode,
                )
                order = list(dict.fromkeys(h.file_name.removesuffix(".txt") for h in hits))
                assert report.modes[mode].rankings[qid] == order[: evaluation.DOC_DEPTH]

    for name, ranking in [*report.modes.items(), *report.references.items()]:
        expected = _by_hand(data.qrels, ranking.rankings)
        assert ranking.metrics == pytest.approx(expected, abs=1e-9), name
        assert 0 < ranking.metrics["ndcg@10"] <= 1
        assert 0 < ranking.latency_ms["p50"] <= ranking.latency_ms["p95"]
    # Each query is a sentence of its document: every way of searching finds most of them.
    for ranking in report.modes.values():
        assert ranking.metrics["recall@100"] >= 0.9

    again = evaluation.run_eval(rt, dataset, split="test", modes=["lexical"], references=False)
    assert again.project == report.project
    assert (again.ingest.vectorized_now, again.ingest.reused) == (0, 20)
    assert again.ingest.pipeline_seconds == report.ingest.pipeline_seconds
    assert again.modes["lexical"].rankings == report.modes["lexical"].rankings
    assert list(again.modes) == ["lexical"] and again.references == {}


def test_eval_refuses_what_is_not_a_beir_split(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(evaluation.EvalDataError, match=r"has no split .dev..*it has: test"):
        evaluation.load_beir(dataset, "dev")
    with pytest.raises(evaluation.EvalDataError, match=r"corpus\.jsonl is missing"):
        evaluation.load_beir(tmp_path, "test")


def test_the_metrics_follow_the_given_order_not_trec_eval_ties() -> None:
    qrels = {"q": {"b": 1}}
    # "b" second: trec_eval would sort equal scores by document id, and "b" > "a".
    assert evaluation.evaluate(qrels, {"q": ["a", "b"]})["mrr@10"] == pytest.approx(0.5)
    assert evaluation.evaluate(qrels, {"q": []}) == dict.fromkeys(evaluation.METRICS, 0.0)
    assert evaluation.percentiles([5.0, 1.0, 3.0, 2.0, 4.0]) == {"p50": 3.0, "p95": 5.0}


@pytest.mark.slow
def test_docvec_eval_command(dataset: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCVEC_")}
    env["DOCVEC_DATA_DIR"] = str(tmp_path / "state")
    exe = str(Path(sys.executable).parent / "docvec")

    def docvec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "eval", str(dataset), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )

    r = docvec("--split", "test", "--mode", "all", "--no-reference", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert set(report["modes"]) == set(SEARCH_MODES) and report["references"] == {}
    assert set(report["modes"]["hybrid"]["metrics"]) == set(evaluation.METRICS)
    assert report["ingest"]["vectorized_now"] == 20

    r = docvec("--split", "test", "--mode", "hybrid")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "nDCG@10".lower() in r.stdout.lower() and "hybrid" in r.stdout
    assert "20 reused" in r.stdout

    r = docvec("--split", "dev")
    assert r.returncode == 1 and "has no split 'dev'" in r.stderr
