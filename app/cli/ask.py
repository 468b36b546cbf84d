"""``docvec ask``: a question answered from a project's chunks, streamed, then its references."""

from __future__ import annotations

import sys
import uuid
from typing import Annotated

import typer
from rich.markup import escape

from app import answers, services
from app.cli._utilities import (
    JsonOpt,
    ProjectOpt,
    app,
    err,
    exit_on,
    fail,
    open_runtime,
    out,
    print_json,
)
from app.config import get_settings
from app.errors import DocvecError
from app.runtime import Runtime
from app.vectorstore import DEFAULT_SEARCH_MODE, SEARCH_MODES

#: Characters of a source's text shown under its reference.
_SNIPPET = 160


def _retriever(runtime: Runtime, project_id: uuid.UUID) -> answers.Retrieve:
    """The one place this entry point reaches search (:meth:`Runtime.retriever`)."""
    return runtime.retriever(project_id)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    project: ProjectOpt,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", min=1, max=100, help="Chunks retrieved (default: 8)."),
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="How chunks are retrieved: dense, lexical or hybrid.")
    ] = DEFAULT_SEARCH_MODE,
    score_threshold: Annotated[
        float | None,
        typer.Option(
            "--score-threshold",
            min=-1.0,
            max=1.0,
            help="Lowest cosine similarity of a chunk; none passing it: no answer.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question from a project's documents, citing them as [n].

    The answer streams to the terminal, then the references: file, page, chunk and a snippet of
    each cited source. The chat provider is DOCVEC_CHAT__PROVIDER (default extractive: quotes the
    best-matching sentences, no model).
    """
    if mode not in SEARCH_MODES:
        raise fail(f"--mode must be one of {', '.join(SEARCH_MODES)}")
    if mode == "lexical" and score_threshold is not None:
        raise fail("--score-threshold is a cosine similarity: it has no meaning with lexical")
    search_mode = {m: m for m in SEARCH_MODES}[mode]
    settings = get_settings()
    with open_runtime(settings) as runtime, exit_on(DocvecError, services.NotFound):
        with runtime.sessions() as session:
            found = services.find_project(session, project)
            project_id, name = found.id, found.name
        done: answers.Answer | None = None
        streamed = False
        events = answers.answer_events(
            question,
            retrieve=_retriever(runtime, project_id),
            chat=runtime.chat,
            settings=settings.chat,
            top_k=top_k,
            mode=search_mode,
            score_threshold=score_threshold,
            stream=True,
            project=name,
        )
        try:
            for event in events:
                if isinstance(event, answers.DeltaEvent) and not as_json:
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                    streamed = True
                elif isinstance(event, answers.DoneEvent):
                    done = event.answer
        except DocvecError:
            if streamed:  # the error goes on a line of its own, after the partial answer
                sys.stdout.write("\n")
            raise
    assert done is not None
    if as_json:
        print_json(done.as_dict())
        return
    if streamed and not done.answer.endswith("\n"):
        sys.stdout.write("\n")
    _references(done)


def _references(done: answers.Answer) -> None:
    """The numbered references after the answer: cited sources first, then the others used."""
    label = (
        "extractive answer: sentences quoted from the sources, no language model"
        if done.extractive
        else f"answered by {done.provider}:{done.model}"
    )
    out.print(
        f"[dim]({label}; retrieval {done.retrieval_ms:.0f} ms, "
        f"generation {done.generation_ms:.0f} ms)[/dim]",
        highlight=False,
    )
    if done.no_answer:
        return
    cited = set(done.cited)
    out.print("\n[bold]References[/bold]")
    for source in [*done.citations, *(s for s in done.sources if s.n not in cited)]:
        where = f"page {source.page} · " if source.page is not None else ""
        snippet = " ".join(source.text.split())
        if len(snippet) > _SNIPPET:
            snippet = snippet[:_SNIPPET].rsplit(" ", 1)[0] + " …"
        mark = "" if source.n in cited else " [dim](not cited)[/dim]"
        out.print(
            f"[bold][{source.n}][/bold] {escape(source.file_name)} · {where}"
            f"chunk {source.chunk_index}"
            f" · chars {source.start_char}-{source.end_char}{mark}",
            highlight=False,
        )
        out.print(f"    {snippet}", markup=False, highlight=False)
    if done.invalid_citations:
        numbers = ", ".join(str(n) for n in done.invalid_citations)
        err.print(f"[yellow]removed citations naming no source: {numbers}[/yellow]")
