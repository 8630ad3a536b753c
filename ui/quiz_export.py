"""Quiz exports: CSV, Anki (.apkg via genanki, or Anki's tab-separated text import) and JSON. What each item
shows (its options with their letters, the answer) is its quiz type's (:meth:`rag.quiz.types.QuizType.show`);
citations are formatted here, in the UI layer, with :func:`ui.render.source_line`."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.quiz import QuizError, QuizItem, type_of
from rag.quiz.types import DEFAULT_TYPE
from ui.render import source_line

CSV_COLUMNS = ["question", "options", "answer", "explanation", "source", "section"]
OPTION_SEPARATOR = " | "


def export_csv(items: Sequence[QuizItem], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for it in items:
            shown = type_of(it).show(it)
            writer.writerow([
                shown.question,
                OPTION_SEPARATOR.join(option for _, option in shown.options),
                shown.answer,
                shown.explanation,
                it.citation.source,
                it.citation.section,
            ])


def anki_fields(item: QuizItem) -> tuple[str, str]:
    """(front, back) as HTML without tabs or newlines (all text escaped)."""

    def esc(s: Any) -> str:
        return html.escape(re.sub(r"\s+", " ", str(s or "")).strip(), quote=True)

    shown = type_of(item).show(item)
    front = esc(shown.question)
    if shown.options:
        front += "<br>" + "<br>".join(f"{letter}) {esc(o)}" for letter, o in shown.options)
    back = (f"{shown.answer_letter}) " if shown.answer_letter else "") + f"<b>{esc(shown.answer)}</b>"
    if shown.explanation:
        back += f"<br>{esc(shown.explanation)}"
    back += f"<br><small>{esc(source_line(item.citation))}</small>"
    return front, back


def export_anki_txt(items: Sequence[QuizItem], path: Path) -> None:
    """Anki's "Import File" text format: tab-separated Front/Back, HTML enabled."""
    lines = ["#separator:tab", "#html:true", "#columns:Front\tBack"]
    lines += ["\t".join(anki_fields(it)) for it in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def export_apkg(items: Sequence[QuizItem], path: Path, deck_name: str) -> None:
    import genanki

    def stable_id(text: str) -> int:
        return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) | (1 << 30)

    model = genanki.Model(
        stable_id("studybot-basic-model"),
        "studybot basic",
        fields=[{"name": "Front"}, {"name": "Back"}],
        templates=[{
            "name": "Card 1",
            "qfmt": "{{Front}}",
            "afmt": '{{FrontSide}}<hr id="answer">{{Back}}',
        }],
    )
    deck = genanki.Deck(stable_id(deck_name), deck_name)
    for it in items:
        front, back = anki_fields(it)
        deck.add_note(genanki.Note(model=model, fields=[front, back], guid=genanki.guid_for(it.question, it.answer)))
    genanki.Package(deck).write_to_file(str(path))


EXPORT_SUFFIXES = (".csv", ".txt", ".tsv", ".apkg", ".json")


def export_items(items: Sequence[QuizItem], path: Path | str, *, topic: str | None = None,
                 qtype: str = DEFAULT_TYPE) -> Path:
    """Write the items in the format the file name asks for: .csv, .apkg, .json, or Anki .txt/.tsv."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise QuizError(f"Cannot export to {path.name}: use a file name ending in {', '.join(EXPORT_SUFFIXES)}.")
    if not items:
        raise QuizError("There are no questions to export yet: make a quiz first.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        export_csv(items, path)
    elif suffix == ".apkg":
        export_apkg(items, path, f"studybot::{topic or 'handbooks'}")
    elif suffix == ".json":
        data = {"topic": topic, "type": qtype, "items": [i.to_json() for i in items]}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        export_anki_txt(items, path)
    return path
