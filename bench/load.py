"""Load test of the web app: concurrent ``gradio_client`` sessions asking gold questions through ``/ask_stream``.

Usage: python -m bench.load [--users 1,4,8] [--per-session 1] [--backend local,server] [--slots 2]
                            [--max-tokens 96] [--timeout 900] [--home DIR | --url URL [--auth USER:PASSWORD]]
                            [--json]

Without ``--url`` the real app (``ui.app.launch``) is started in this process on a free 127.0.0.1 port around
a real :class:`StudyService` (the corpus is ingested into the home first if needed), once per backend:

* ``local``: the in-process llama.cpp model, one request at a time (the app's queue, concurrency 1);
* ``server``: llama.cpp's ``llama-server`` (built by ``python -m tools.llama_build server`` from the same
  pinned llama.cpp with the same flags), started here on 127.0.0.1 with ``--slots`` parallel slots and
  continuous batching, the app on the OpenAI-compatible backend with concurrency ``--slots``: how a team
  scales past one model instance.

The home is ``--home``, else ``STUDYBOT_HOME``, else a temporary directory removed at the end; the model always
comes from the usual cache, so another home does not assemble the 1.1 GB GGUF again. The model (and its kept
prompt prefix) is loaded before the clock starts.

For each number of users, that many sessions (one ``gradio_client.Client`` each) submit at the same moment (a
barrier) and each asks ``--per-session`` distinct gold questions in turn (every fourth unanswerable). Per
request: the time to the first content a student reads (the quotes, an explanation sentence or the refusal:
the first such event of the stream), to the complete answer, the queue wait (submit -> the job's first
PROCESSING status) and the queue rank on joining. Prints one table row per (backend, users): requests,
errors, p50/p95 first content, p50/p95 complete, p50 queue wait, throughput (``--json``: one JSON object with
every request). Exit code 1 if any request errored or was not answered.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from rag.settings import Settings, apply_offline_env  # noqa: E402

apply_offline_env()
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
for _var in ("NO_PROXY", "no_proxy"):  # never send 127.0.0.1 traffic through a proxy
    os.environ[_var] = ",".join(x for x in (os.environ.get(_var), "127.0.0.1", "localhost") if x)

from gradio_client import Client  # noqa: E402
from gradio_client.utils import Status, StatusUpdate  # noqa: E402

from evals.gold import GoldItem, load_gold  # noqa: E402

POLL_S = 0.05
WAITING = {Status.STARTING, Status.JOINING_QUEUE, Status.IN_QUEUE, Status.SENDING_DATA}
RUNNING = {Status.PROCESSING, Status.ITERATING, Status.PROGRESS}


# --- questions ----------------------------------------------------------------------------------------
def pick_questions(items: list[GoldItem], n: int) -> list[GoldItem]:
    """``n`` distinct gold items spread over the set: every fourth one unanswerable (at least one if n >= 2)."""
    ans = [i for i in items if i.answerable]
    una = [i for i in items if not i.answerable]
    n_una = min(len(una), max(1, n // 4)) if n >= 2 else 0
    n_ans = n - n_una

    def spread(src: list[GoldItem], k: int) -> list[GoldItem]:
        if k <= len(src):
            return [src[j * len(src) // k] for j in range(k)]
        return [src[j % len(src)] for j in range(k)]  # more requests than questions: repeat

    pick_a, pick_u = spread(ans, n_ans), spread(una, n_una)
    step = n // n_una if n_una else n + 1
    out: list[GoldItem] = []
    for pos in range(n):
        if pick_u and (pos % step == step - 1 or not pick_a):
            out.append(pick_u.pop(0))
        else:
            out.append(pick_a.pop(0))
    return out


# --- stats --------------------------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float | None:
    """Percentile with linear interpolation between closest ranks (q in [0, 100])."""
    if not xs:
        return None
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (pos - lo), 2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- one request --------------------------------------------------------------------------------------
def _drain_updates(job: Any) -> list[StatusUpdate]:
    """Every status update the job received, in order (gradio_client keeps them in ``communicator.updates``)."""
    updates: list[StatusUpdate] = []
    queue = getattr(getattr(job, "communicator", None), "updates", None)
    if queue is None:
        return updates
    while True:
        try:
            u = queue.get_nowait()
        except Exception:  # asyncio.QueueEmpty
            return updates
        if isinstance(u, StatusUpdate):
            updates.append(u)


CONTENT = {"quotes", "delta", "finished"}  # what a student reads: the handbook's words, the explanation, a refusal


def ask_one(client: Client, session: int, item: GoldItem, timeout: float) -> dict[str, Any]:
    """One question through ``/ask_stream``: latency to the first content a student reads (quotes, an
    explanation sentence or the refusal) and to the complete answer, the queue wait and the queue rank."""
    row: dict[str, Any] = {"session": session, "id": item.id, "answerable": item.answerable,
                           "answered": False, "refused": None, "queue_wait_s": None, "first_content_s": None,
                           "latency_s": None, "service_total_s": None, "rank": None, "queue_size": None,
                           "error": None}
    t0_dt = datetime.now()
    t0 = time.perf_counter()
    started_poll: float | None = None  # fallback when the update log is unavailable
    last_waiting = 0.0
    job: Any = None
    result: Any = None
    try:
        job = client.submit(item.question, api_name="/ask_stream")
        while True:
            now = time.perf_counter() - t0
            if now > timeout:
                job.cancel()
                raise TimeoutError(f"no answer after {timeout:.0f} s")
            if row["first_content_s"] is None and any(isinstance(o, dict) and o.get("event") in CONTENT
                                                      for o in job.outputs()):
                row["first_content_s"] = round(now, 3)
            if job.done():
                break
            st = job.status()
            if st.code in WAITING:
                last_waiting = now
            elif st.code in RUNNING and started_poll is None:
                started_poll = (st.time - t0_dt).total_seconds() if st.time else now
            time.sleep(POLL_S)
        outputs = job.outputs()
        exc = job.exception() if hasattr(job, "exception") else None
        if exc is not None:
            raise exc
        result = outputs[-1] if outputs else None
        row["latency_s"] = round(time.perf_counter() - t0, 3)
        if row["first_content_s"] is None:
            row["first_content_s"] = row["latency_s"]
    except Exception as exc:  # noqa: BLE001 - every failure is a result of the benchmark
        row["latency_s"] = round(time.perf_counter() - t0, 3)
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return row
    finally:
        updates = _drain_updates(job) if job is not None else []
        ranks = [u for u in updates if u.code == Status.IN_QUEUE]
        if ranks:
            row["rank"] = ranks[0].rank
            row["queue_size"] = max((u.queue_size or 0) for u in ranks)
        first_run = next((u for u in updates if u.code in RUNNING and u.time), None)
        if first_run is not None:
            row["queue_wait_s"] = round((first_run.time - t0_dt).total_seconds(), 3)
        elif started_poll is not None:
            row["queue_wait_s"] = round(started_poll, 3)
        elif row["error"] is None:  # finished between two polls: the last time it was seen waiting
            row["queue_wait_s"] = round(last_waiting, 3)
    if not isinstance(result, dict) or result.get("event") != "finished":
        row["error"] = f"unexpected last event {str(result)[:200]}"
        return row
    row["refused"] = bool(result.get("refused"))
    row["answered"] = row["refused"] or bool(str(result.get("answer") or "").strip())
    row["service_total_s"] = (result.get("timings") or {}).get("total_s")
    row["citations"] = len(result.get("citations") or [])
    row["answer"] = str(result.get("answer") or "")[:160]
    return row


def run_sessions(url: str, questions: list[GoldItem], sessions: int, per_session: int, timeout: float,
                 auth: tuple[str, str] | None) -> tuple[list[dict[str, Any]], float]:
    """All sessions at once (barrier); returns the rows and the wall time from release to the last answer."""
    clients = [Client(url, verbose=False, auth=auth, download_files=False, analytics_enabled=False)
               for _ in range(sessions)]
    release: list[float] = []
    barrier = threading.Barrier(sessions, action=lambda: release.append(time.perf_counter()))
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()

    def session(i: int) -> None:
        mine = [questions[i + k * sessions] for k in range(per_session)]
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            with lock:
                rows.extend({"session": i, "id": q.id, "answerable": q.answerable, "answered": False,
                             "error": "barrier broken"} for q in mine)
            return
        for item in mine:
            row = ask_one(clients[i], i, item, timeout)
            with lock:
                rows.append(row)
            print(f"session {i} {item.id}: wait={row['queue_wait_s']} latency={row['latency_s']} "
                  f"service={row['service_total_s']} rank={row['rank']} refused={row['refused']} "
                  f"error={row['error']}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=session, args=(i,), daemon=True, name=f"session-{i}")
               for i in range(sessions)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120 + per_session * (timeout + 30)
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    end = time.perf_counter()
    for c in clients:
        c.close()
    with lock:
        done = list(rows)
    asked = {(r["session"], r["id"]) for r in done}
    for i in range(sessions):  # a session still stuck at the deadline: its missing requests are errors
        for k in range(per_session):
            q = questions[i + k * sessions]
            if (i, q.id) not in asked:
                done.append({"session": i, "id": q.id, "answerable": q.answerable, "answered": False,
                             "error": "session did not finish before the deadline"})
    done.sort(key=lambda r: (r["session"], r["id"]))
    return done, end - (release[0] if release else end)


# --- the in-process app and the model server ------------------------------------------------------------
def start_llama_server(gguf: Path, slots: int, n_ctx: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """llama.cpp's ``llama-server`` (``python -m tools.llama_build server`` builds it) on a free loopback port
    with ``slots`` parallel slots (continuous batching), each with the app's context size."""
    from tools.llama_build import selected_args, server_path

    binary = Path(os.environ.get("STUDYBOT_LLAMA_SERVER") or server_path(selected_args()))
    if not binary.is_file():
        raise SystemExit(f"{binary} is missing: build it with `.venv/bin/python -m tools.llama_build server`")
    port = free_port()
    cmd = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--parallel", str(slots),
           "-c", str(n_ctx * slots), "--threads", str(threads), "--no-webui", "--alias", "studybot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with {proc.returncode}: {shlex.join(cmd)}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base + "/v1"
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama-server did not become healthy within 180 s")


def start_app(args: argparse.Namespace, llm: dict[str, Any], concurrency: int
              ) -> tuple[Any, str, dict[str, Any], Path | None]:
    """Real service + app on a free loopback port; returns (app, url, setup figures, temp home to remove)."""
    from ui.app import launch
    from ui.service import StudyService

    base = Settings()
    temp_home: Path | None = None
    if args.home:
        home = Path(args.home).expanduser()
    elif os.environ.get("STUDYBOT_HOME"):
        home = base.storage.home
    else:
        temp_home = home = Path(tempfile.mkdtemp(prefix="studybot-load-"))
    # Another home reuses the default home's model cache instead of assembling 1.1 GB again.
    settings = Settings(storage={"home": home, "models_cache": base.storage.models_dir},
                        llm={"max_tokens": args.max_tokens, **llm}, ui={"concurrency": concurrency})
    svc = StudyService(settings)
    setup: dict[str, Any] = {"home": str(home), "concurrency_limit": settings.ui.concurrency,
                             "max_tokens": settings.llm.max_tokens, "n_threads": settings.llm.threads}
    t0 = time.perf_counter()
    if svc.library.needs_sync():
        print(f"ingesting {settings.storage.corpus_dir} into {home} ...", file=sys.stderr, flush=True)
        summary = svc.ingest(settings.storage.corpus_dir)
        if summary.failed:
            print(f"ingest: {len(summary.failed)} file(s) failed: {summary.failed}", file=sys.stderr)
        setup["ingest_s"] = round(time.perf_counter() - t0, 1)
        setup["chunks"] = summary.chunks_total
    t0 = time.perf_counter()
    svc.retrieve("warm up the retriever")
    svc.warm_up()  # loads the model (or reaches the server) and its kept prompt prefix before the clock starts
    setup["warmup_s"] = round(time.perf_counter() - t0, 1)
    app, url = launch(svc, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    return app, url, setup, temp_home


def summarize(rows: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("error")]
    answered = [r for r in ok if r.get("answered")]
    lat = [r["latency_s"] for r in ok]
    first = [r["first_content_s"] for r in ok if r.get("first_content_s") is not None]
    waits = [r["queue_wait_s"] for r in ok if r.get("queue_wait_s") is not None]
    service = [r["service_total_s"] for r in ok if isinstance(r.get("service_total_s"), int | float)]
    return {
        "requests": len(rows),
        "answered": len(answered),
        "errored": sum(1 for r in rows if r.get("error")),
        "refused": sum(1 for r in ok if r.get("refused")),
        "p50_first_content_s": pct(first, 50),
        "p95_first_content_s": pct(first, 95),
        "p50_latency_s": pct(lat, 50),
        "p95_latency_s": pct(lat, 95),
        "p50_queue_wait_s": pct(waits, 50),
        "p95_queue_wait_s": pct(waits, 95),
        "max_queue_rank": max((r["rank"] for r in ok if r.get("rank") is not None), default=None),
        "mean_service_total_s": round(statistics.mean(service), 2) if service else None,
        "throughput_answers_per_min": round(60 * len(answered) / wall, 2) if wall > 0 else None,
        "wall_s": round(wall, 1),
    }


COLUMNS = ["backend", "users", "requests", "errored", "p50_first_content_s", "p95_first_content_s",
           "p50_latency_s", "p95_latency_s", "p50_queue_wait_s", "throughput_answers_per_min"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", default="1,4,8", help="comma-separated numbers of concurrent sessions, run in turn")
    ap.add_argument("--per-session", type=int, default=1, help="questions each session asks, one after another")
    ap.add_argument("--backend", default="local", help="comma-separated: local (the in-process llama.cpp model, "
                    "one request at a time) and/or server (llama.cpp's llama-server with --slots parallel slots)")
    ap.add_argument("--slots", type=int, default=2, help="parallel slots of the server backend (and the app's "
                    "concurrency limit for it)")
    ap.add_argument("--max-tokens", type=int, default=96, help="answer length cap (in-process app only)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed for one request")
    ap.add_argument("--home", default=None, help="state dir (default: STUDYBOT_HOME, else a temporary dir)")
    ap.add_argument("--url", default=None, help="use an already running app instead of starting one")
    ap.add_argument("--auth", default=None, metavar="USER:PASSWORD", help="login for --url")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        users = [int(u) for u in args.users.split(",") if u.strip()]
    except ValueError:
        ap.error("--users takes numbers separated by commas, e.g. 1,4,8")
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    if not users or min(users) < 1 or args.per_session < 1 or args.slots < 1:
        ap.error("--users, --per-session and --slots must be >= 1")
    if set(backends) - {"local", "server"}:
        ap.error("--backend takes local and/or server")
    auth: tuple[str, str] | None = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            ap.error("--auth must look like user:password")
        auth = (user, password)

    gold = load_gold()
    results: list[dict[str, Any]] = []
    all_rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for backend in (["url"] if args.url else backends):
        app = server = None
        temp_home: Path | None = None
        try:
            if args.url:
                url, setup = args.url, {"url": args.url}
            elif backend == "server":
                from rag.backends import models

                base = Settings()
                gguf = Path(base.llm.model) if base.llm.model else models.default_gguf_status(base).path
                server, api = start_llama_server(gguf, args.slots, base.llm.n_ctx, base.llm.threads)
                app, url, setup, temp_home = start_app(
                    args, {"backend": "openai", "base_url": api, "api_model": "studybot"}, args.slots)
                setup["slots"] = args.slots
            else:
                app, url, setup, temp_home = start_app(args, {}, 1)
            for n in users:
                questions = pick_questions(gold, n * args.per_session)
                print(f"{backend}: app at {url}; {n} sessions x {args.per_session} question(s)", file=sys.stderr,
                      flush=True)
                rows, wall = run_sessions(url, questions, n, args.per_session, args.timeout, auth)
                results.append({"backend": backend if backend != "server" else f"llama-server x{args.slots}",
                                "users": n, **summarize(rows, wall), **setup})
                all_rows.extend({"backend": backend, "users": n, **r} for r in rows)
        finally:
            if app is not None:
                app.close(verbose=False)
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            if temp_home is not None:
                shutil.rmtree(temp_home, ignore_errors=True)

    if args.json:
        print(json.dumps({"results": results, "rows": all_rows,
                          "total_run_s": round(time.perf_counter() - t_all, 1)}, ensure_ascii=False))
    else:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for r in results:
            print("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) + " |")
        print(f"\ntotal run {time.perf_counter() - t_all:.0f} s; first content = the quotes, a sentence of the "
              "explanation or the refusal, whichever a student sees first")
    bad = any(r["errored"] or r["answered"] != r["requests"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
