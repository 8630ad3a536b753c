"""The gold set: questions over the corpus with verbatim answer phrases (and unanswerable ones)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

GOLD_PATH = Path(__file__).resolve().parent / "gold.jsonl"


@dataclass(frozen=True)
class GoldItem:
    id: str
    question: str
    answerable: bool
    source: str | None
    phrases: list[str] = field(default_factory=list)
    reference: str | None = None
    kind: str | None = None  # blind set: number | formula | code | comparison | symptom | compound | fact
    key_facts: list[list[str]] = field(default_factory=list)  # each fact: alternative spellings (lower case)


def load_gold(path: Path = GOLD_PATH) -> list[GoldItem]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc})") from exc
        items.append(
            GoldItem(
                id=d["id"],
                question=d["question"],
                answerable=bool(d["answerable"]),
                source=d.get("source"),
                phrases=list(d.get("phrases") or []),
                reference=d.get("reference"),
                kind=d.get("kind"),
                key_facts=[list(f) for f in d.get("key_facts") or []],
            )
        )
    return items


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def is_relevant(item: GoldItem, source: str, text: str) -> bool:
    """A passage answers ``item`` if it is from the item's file and holds one of its verbatim phrases."""
    if not item.answerable or source != item.source:
        return False
    body = normalize(text)
    return any(normalize(p) in body for p in item.phrases)


# A text "states" a gold phrase when it holds this share of the phrase's words: a phrase may straddle a unit
# cut (a table row without its header, a list item without its introduction). 0.8, the answers issue's bar.
PHRASE_SHARE = 0.8


def _words(text: str) -> list[str]:
    """Lower-case words with the Markdown and punctuation around them stripped ("**clicks.**" -> "clicks")."""
    out = []
    for w in normalize(text).split():
        w = w.strip("*_`#>|:;,.!?\"'()[]")
        if w:
            out.append(w)
    return out


def phrase_share(item: GoldItem, text: str) -> float:
    """The best share of one of ``item``'s phrases' words that ``text`` holds (words lower-cased, with the
    punctuation and Markdown around them stripped); 1.0 when ``text`` holds a phrase verbatim."""
    body = normalize(text)
    bag = set(_words(text))
    best = 0.0
    for p in item.phrases:
        if normalize(p) in body:
            return 1.0
        words = _words(p)
        if words:
            best = max(best, sum(w in bag for w in words) / len(words))
    return best


def states(item: GoldItem, text: str) -> bool:
    """Whether ``text`` states one of ``item``'s gold phrases (:data:`PHRASE_SHARE` of its words)."""
    return item.answerable and phrase_share(item, text) >= PHRASE_SHARE
