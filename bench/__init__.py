"""The benches: each measures one thing on the real components and prints what the README quotes. Run one from the
repository root as ``python -m bench.<name>`` (``python -m bench.ingest --help``). They use only the public API of
``rag``, ``ingest``, ``evals`` and ``ui`` (a hook the library offers, never a private name: the architecture test
checks), and share what several need through :mod:`bench.common`, not through each other."""
