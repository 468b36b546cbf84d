"""``docvec search``: the best chunks of a project for a query (dense, lexical or hybrid), and
the pages of its image documents by what they show (an index with an image model)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from app import services
from app.cli._utilities import (
    JsonOpt,
    ProjectOpt,
    app,
    exit_on,
    fail,
    open_runtime,
    out,
    print_json,
)
from app.config import get_settings
from app.errors import DocvecError
from app.vectorstore import DEFAULT_SEARCH_MODE, SEARCH_MODES

#: Characters of a chunk's text shown in the table.
_TEXT_SHOWN = 400


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The question or text to look for.")],
    project: ProjectOpt,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=100)] = 5,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            min=-1.0,
            max=1.0,
            help="Minimum cosine similarity of the dense side (not with --mode lexical).",
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="dense (embeddings), lexical (BM25 on words) or hybrid (both, fused by RRF).",
        ),
    ] = DEFAULT_SEARCH_MODE,
    images: Annotated[
        bool,
        typer.Option(
            "--images/--no-images",
            help="Also rank image documents by what they show (when the index has an image "
            "model; not in lexical mode), fused with the text ranking by RRF.",
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Search inside a project: dense, lexical (BM25) or hybrid; and images by what they show."""
    if mode not in SEARCH_MODES:
        raise fail(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    if mode == "lexical" and score_threshold is not None:
        raise fail("--score-threshold is a cosine similarity: it has no meaning with lexical")
    with (
        open_runtime(get_settings()) as runtime,
        exit_on(DocvecError, services.NotFound),
        runtime.sessions() as session,
    ):
        results = runtime.search(
            session,
            project=services.find_project(session, project),
            query=query,
            top_k=top_k,
            score_threshold=score_threshold,
            mode=mode,
            images=images,
        )
    if as_json:
        print_json(
            {
                "query": query,
                "project": project,
                "mode": mode,
                "results": [_hit(r) for r in results],
            }
        )
        return
    if not results:
        out.print("no results")
        return
    # Any hit ranked by the image side means every score is the fused one.
    fused = mode == "hybrid" or any("image" in r.matched for r in results)
    table = Table(show_lines=True)
    table.add_column(
        "RRF" if fused else {"dense": "cosine", "lexical": "BM25"}[mode], justify="right"
    )
    if fused:
        table.add_column("matched")
    table.add_column("file", overflow="fold", max_width=30)
    table.add_column("chunk", justify="right")
    table.add_column("page", justify="right")
    table.add_column("text", overflow="fold")
    for r in results:
        text = r.text if len(r.text) <= _TEXT_SHOWN else r.text[:_TEXT_SHOWN] + "…"
        if not text and "image" in r.matched:
            text = "(an image found by what it shows; no text on this page)"
        ranks = [_sides(r)] if fused else []
        table.add_row(
            f"{r.score:.4f}" if fused else f"{r.score:.3f}",
            *ranks,
            r.file_name,
            "-" if r.chunk_index is None else str(r.chunk_index),
            "" if r.page is None else str(r.page),
            text,
        )
    out.print(table)


def _sides(r: services.SearchResult) -> str:
    """``dense #1 · image #3``: each side that found the hit, with its rank."""
    ranks = {"dense": r.dense_rank, "lexical": r.lexical_rank, "image": r.image_rank}
    return " · ".join(f"{side} #{ranks[side]}" for side in r.matched)


def _hit(r: services.SearchResult) -> dict[str, Any]:
    return {
        "score": r.score,
        "dense_rank": r.dense_rank,
        "lexical_rank": r.lexical_rank,
        "dense_score": r.dense_score,
        "lexical_score": r.lexical_score,
        "image_rank": r.image_rank,
        "image_score": r.image_score,
        "matched": list(r.matched),
        "document_id": str(r.document_id),
        "file_name": r.file_name,
        "chunk_index": r.chunk_index,
        "page": r.page,
        "start_char": r.start_char,
        "end_char": r.end_char,
        "text": r.text,
    }
