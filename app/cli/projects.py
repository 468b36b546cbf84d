"""``docvec projects``: the projects and how many documents each holds."""

from __future__ import annotations

from app import services
from app.cli._utilities import JsonOpt, app, open_runtime, out, print_json
from app.config import get_settings


@app.command()
def projects(as_json: JsonOpt = False) -> None:
    """List projects."""
    with open_runtime(get_settings()) as runtime, runtime.sessions() as session:
        summaries = services.list_project_summaries(session)
    if as_json:
        print_json([{"name": p.name, "id": str(p.id), "documents": p.documents} for p in summaries])
        return
    for p in summaries:
        out.print(f"{p.id}  {p.name}  ({p.documents} documents)", highlight=False)
