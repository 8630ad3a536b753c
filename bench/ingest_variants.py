"""Cold ingest of the handbooks and gold retrieval metrics for ingest variants, one after another in one run.

    .venv/bin/python bench/ingest_variants.py "separate@64,separate:lucene@16,pooled:lucene@16"

A variant is WINDOWS[:BM25 METHOD][@EMBED BATCH][+noprefix|+w400]: WINDOWS "separate" (each sentence window
embedded on its own) or "pooled" (pooled from its chunk's pass)
METHOD robertson or lucene (bm25s).
"""
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rag.settings import Settings, apply_offline_env  # noqa: E402

apply_offline_env()
import rag.keyword as kw  # noqa: E402
from evals.gold import load_gold  # noqa: E402
from evals.retrieval import evaluate_retrieval  # noqa: E402
from ingest.pipeline import ingest_corpus  # noqa: E402
from rag.embeddings import Embedder  # noqa: E402
from rag.retrieval import HybridRetriever  # noqa: E402
from rag.store import Index  # noqa: E402

variants = sys.argv[1].split(",")
gold = load_gold()
emb = None
for v in variants:
    batch = int(v.split("@")[1].split("+")[0]) if "@" in v else 64
    v0 = v.split("@")[0]
    over = {"pooled": {"embed": {"pooled_windows": True}}, "separate": {"embed": {"pooled_windows": False}},
            "nowin": {"embed": {"pooled_windows": True}, "retrieval": {"window_weight": 0.0}},
            "q": {"embed": {"pooled_windows": False, "quantize": True}}}[v0.split(":")[0]]
    over = {**over, "embed": {**over["embed"], "batch_size": batch}}
    if ":" in v0:
        kw.METHOD = v0.split(":")[1]
    import ingest.chunking as ch
    import ingest.pipeline as pl
    if "+noprefix" in v:
        pl.windows = lambda c, size=220: [w.removeprefix(f"{c.section}: ") if c.section else w for w in ch.windows(c, size)]
    elif "+w400" in v:
        pl.windows = lambda c, size=400: ch.windows(c, 400)
    else:
        pl.windows = ch.windows
    with tempfile.TemporaryDirectory() as home:
        s = Settings(storage={"home": Path(home)}, **over)
        e = Embedder.from_settings(s)
        e.embed(["warm up"])
        idx = Index(s, e)
        t0 = time.perf_counter()
        summ = ingest_corpus(idx, s.storage.corpus_dir)
        t = time.perf_counter() - t0
        t0 = time.perf_counter()
        ingest_corpus(idx, s.storage.corpus_dir)
        noop = time.perf_counter() - t0
        r = HybridRetriever.from_settings(idx)
        m = evaluate_retrieval(r, gold, modes=("dense", "bm25", "hybrid"))["modes"]
        print(json.dumps({"variant": v, "ingest_s": round(t, 2), "chunks": summ.chunks_total, "noop_s": round(noop, 3),
                          **{f"{mode}_{k}": m[mode][k] for mode in m for k in ("hit@5", "mrr@5")}}), flush=True)
