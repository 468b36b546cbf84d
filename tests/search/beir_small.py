"""A small BEIR-format data set built from the real test corpus (``shared/data/corpus``).

Twenty documents: the opening of each English FastAPI / command-line page, and excerpts of four
RFCs. Each query is one sentence of one document, judged relevant to that document only
(``qrels/test.tsv``). Deterministic: the same corpus gives the same files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: Characters per document: one or two chunks of the default size.
DOC_CHARS = 1400
RFC_EXCERPTS = {
    "text/txt/rfc1034.txt": (0.25, 0.6),
    "text/txt/rfc1035.txt": (0.2, 0.45),
    "text/txt/rfc3986.txt": (0.3, 0.6),
    "text/txt/rfc5322.txt": (0.35, 0.65),
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _excerpt(text: str, start: int) -> str:
    """``DOC_CHARS`` characters from the paragraph start at or after ``start``."""
    para = text.find("\n\n", start)
    begin = para + 2 if 0 <= para < start + 2000 else start
    piece = text[begin : begin + DOC_CHARS]
    cut = piece.rfind("\n\n")
    return (piece[:cut] if cut > DOC_CHARS // 2 else piece).strip()


def _query(doc: str) -> str:
    """The longest sentence of ``doc`` between 40 and 240 characters (whitespace collapsed)."""
    flat = re.sub(r"\s+", " ", doc)
    sentences = [s for s in _SENTENCE.split(flat) if 40 <= len(s) <= 240 and "|" not in s]
    if not sentences:
        return flat[len(flat) // 3 : len(flat) // 3 + 160]
    return max(sentences, key=len)


def build(corpus: Path, dest: Path) -> dict[str, str]:
    """Write the data set into ``dest``; returns ``{corpus id: document text}``."""
    docs: dict[str, str] = {}
    for path in sorted((corpus / "text" / "md" / "en").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        docs[f"md-{path.stem}"] = _excerpt(text, 0)
    for rel, fractions in RFC_EXCERPTS.items():
        text = (corpus / rel).read_text(encoding="utf-8", errors="replace").replace("\f", "")
        for f in fractions:
            docs[f"{Path(rel).stem}-{int(f * 100)}"] = _excerpt(text, int(len(text) * f))
    assert len(docs) == 20, sorted(docs)

    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    with (dest / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for cid, text in docs.items():
            title, _, body = text.partition("\n")
            fh.write(json.dumps({"_id": cid, "title": title, "text": body, "metadata": {}}) + "\n")
    with (dest / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for n, text in enumerate(docs.values()):
            fh.write(json.dumps({"_id": f"q{n}", "text": _query(text), "metadata": {}}) + "\n")
        # A query judged in no split: eval leaves it out.
        fh.write(json.dumps({"_id": "unjudged", "text": "nothing", "metadata": {}}) + "\n")
    with (dest / "qrels" / "test.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for n, cid in enumerate(docs):
            fh.write(f"q{n}\t{cid}\t1\n")
    return docs
