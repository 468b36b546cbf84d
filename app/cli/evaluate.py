"""``docvec eval``: retrieval quality of the whole pipeline on a BEIR data set."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from app.cli._utilities import (
    JsonOpt,
    app,
    exit_on,
    fail,
    open_runtime,
    out,
    print_json,
    progress_display,
)
from app.config import get_settings
from app.errors import DocvecError
from app.vectorstore import SEARCH_MODES, SearchMode

if TYPE_CHECKING:
    from app.evaluation import EvalReport


@app.command(name="eval")
def eval_(
    dataset: Annotated[
        Path,
        typer.Argument(
            help="A BEIR data set: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.",
            exists=True,
            file_okay=False,
        ),
    ],
    split: Annotated[str, typer.Option(help="The judgments to use: qrels/<split>.tsv.")] = "test",
    mode: Annotated[str, typer.Option(help="dense, lexical, hybrid, or all three.")] = "all",
    reference: Annotated[
        bool,
        typer.Option(help="Also measure the embedding model alone on whole documents and bm25s."),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Measure retrieval quality on a BEIR data set: nDCG@10, Recall@100, MRR@10, MAP@100.

    Every corpus record is ingested as a document through the pipeline into a project of its own
    (reused when run again with the same data and settings); every query of the split runs
    through the same search as 'docvec search'.
    """
    from app import evaluation

    modes: list[SearchMode] = [m for m in SEARCH_MODES if mode in ("all", m)]
    if not modes:
        raise fail(f"--mode must be all or one of {', '.join(SEARCH_MODES)}")
    with (
        open_runtime(get_settings()) as runtime,
        exit_on(evaluation.EvalDataError, DocvecError),
        progress_display(quiet=as_json) as progress,
    ):
        logging.getLogger("app.pipeline.process").setLevel(logging.CRITICAL)  # the report counts
        report = evaluation.run_eval(
            runtime, dataset, split=split, modes=modes, references=reference, progress=progress
        )
    if as_json:
        print_json(report.as_dict())
        return
    _print_report(report)


def _print_report(report: EvalReport) -> None:
    from app import evaluation

    ing = report.ingest
    table = Table(
        title=f"{report.dataset} ({report.split}, {report.queries} queries) · "
        f"project {report.project}",
        title_justify="left",
    )
    table.add_column("ranking")
    for metric in evaluation.METRICS:
        table.add_column(metric, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    best = evaluation.best_mode(report) if report.modes else None
    rows = [(m, r, m == best) for m, r in report.modes.items()]
    rows += [(f"{m} (reference)", r, False) for m, r in report.references.items()]
    for label, r, is_best in rows:
        table.add_row(
            f"[bold]{label}[/bold]" if is_best else label,
            *[f"{100 * r.metrics[m]:.2f}" for m in evaluation.METRICS],
            f"{r.latency_ms['p50']:.1f}",
            f"{r.latency_ms['p95']:.1f}",
        )
    out.print(table)
    reused = f", {ing.reused} reused from an earlier run" if ing.reused else ""
    failed = f", [red]{ing.failed} failed[/red]" if ing.failed else ""
    out.print(
        f"ingest: {ing.documents} documents, {ing.chunks} chunks, {ing.pipeline_seconds:.0f} s "
        f"of pipeline time; this run vectorized {ing.vectorized_now} in {ing.seconds:.1f} s"
        f"{reused}{failed}. Metrics in percent; latency of one search call (references: in "
        "memory, no store or SQL)."
    )
