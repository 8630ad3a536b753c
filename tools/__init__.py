"""Install-time scripts, run from the source tree before (or without) installing studybot: ``python -m
tools.<name>``. Standard library only; nothing in ``rag``, ``ingest``, ``evals`` or ``ui`` imports them."""
