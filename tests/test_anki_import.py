"""The .apkg export, imported by the official `anki` package into a fresh collection: every card is there."""

from __future__ import annotations

from pathlib import Path

from rag.quiz.models import QuizItem
from rag.types import Citation
from ui.quiz_export import anki_fields, export_items


def test_every_exported_card_is_found_by_anki(tmp_path: Path) -> None:
    from anki.collection import Collection, ImportAnkiPackageOptions, ImportAnkiPackageRequest

    cite = Citation(n=1, chunk_id="c1", source="handbook.md", title="Handbook", section="Regularization",
                    page=3, text="L1 drives weights to zero <b>and</b> makes models sparse.")
    items = [
        QuizItem("mcq", "Which penalty zeroes weights?", "L1", "L1 drives weights to zero.", ["L1", "L2", "Dropout",
                 "Early stopping"], cite),
        QuizItem("short", "What does L2 do to weights?", "Shrinks them smoothly", "", [], cite),
        QuizItem("flashcard", "Lasso", "L1 regularization: drives some weights to exactly zero.", "", [], cite),
    ]
    path = export_items(items, tmp_path / "deck.apkg", topic="regularization", qtype="mixed")
    (tmp_path / "anki").mkdir()
    col = Collection(str(tmp_path / "anki" / "collection.anki2"))
    try:
        col.import_anki_package(ImportAnkiPackageRequest(package_path=str(path), options=ImportAnkiPackageOptions()))
        assert col.card_count() == len(items)
        fronts = sorted(col.get_note(nid).fields[0] for nid in col.find_notes(""))
        assert fronts == sorted(anki_fields(i)[0] for i in items)
        backs = " ".join(col.get_note(nid).fields[1] for nid in col.find_notes(""))
        assert "handbook.md" in backs or "Handbook" in backs  # the citation travels with the card
    finally:
        col.close()
