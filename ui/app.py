"""The Gradio web app: one :class:`ui.service.StudyService` (one model instance) behind a queue, one tab per
feature (Chat, Library, Quiz, Review, Progress, Evals). Study state (cards, reviews, saved conversations) is
the signed-in ``--auth`` user's, or the one local user's without a login. A tab builder takes the service and builds its ``gr.Tab`` inside the
current ``gr.Blocks``. Events that call the LLM pass ``concurrency_id=LLM_QUEUE`` to share the single-model
queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from ui.tab_chat import LLM_QUEUE, build_chat_tab, register_api  # noqa: E402
from ui.tab_evals import build_evals_tab  # noqa: E402
from ui.tab_library import build_library_tab  # noqa: E402
from ui.tab_progress import build_progress_tab  # noqa: E402
from ui.tab_quiz import build_quiz_tab  # noqa: E402
from ui.tab_review import build_review_tab  # noqa: E402

if TYPE_CHECKING:
    from ui.service import StudyService

TabBuilder = Callable[["StudyService"], Any]

__all__ = ["LLM_QUEUE", "build_app", "launch"]

CSS = """
.sb-sources { display: flex; flex-direction: column; gap: 8px; }
.sb-src { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px;
          scroll-margin-top: 12px; transition: background-color .4s, box-shadow .4s; }
.sb-src.sb-cited { border-color: var(--color-accent); }
.sb-src:target, .sb-src.sb-flash { box-shadow: 0 0 0 3px var(--color-accent);
          background: var(--color-accent-soft); }
.sb-src-head { font-weight: 600; }
.sb-n { color: var(--color-accent); margin-right: 4px; }
.sb-badge { font-size: .75em; font-weight: 600; margin-left: 6px; padding: 1px 6px; border-radius: 8px;
            background: var(--color-accent); color: white; }
.sb-src-section, .sb-src-meta { font-size: .85em; color: var(--body-text-color-subdued); }
.sb-passage { white-space: pre-wrap; font-size: .9em; margin-top: 4px; max-height: 24em; overflow: auto; }
.sb-sources-status { font-size: .85em; color: var(--body-text-color-subdued); margin-bottom: 4px; }
.sb-empty { color: var(--body-text-color-subdued); }
"""

# Citation links [n] -> #src-n: scroll the source into view, open its passage and flash it (the chatbot
# may render links with target=_blank, so the click is handled here instead of by the browser).
HEAD = """
<script>
document.addEventListener("click", function (ev) {
  var a = ev.target && ev.target.closest ? ev.target.closest('a[href^="#src-"]') : null;
  if (!a) return;
  var el = document.getElementById(a.getAttribute("href").slice(1));
  ev.preventDefault(); ev.stopPropagation();
  if (!el) return;
  document.querySelectorAll(".sb-src.sb-flash").forEach(function (x) { x.classList.remove("sb-flash"); });
  var d = el.querySelector("details"); if (d) d.open = true;
  el.classList.add("sb-flash");
  el.scrollIntoView({behavior: "smooth", block: "nearest"});
  setTimeout(function () { el.classList.remove("sb-flash"); }, 2500);
}, true);
</script>
"""


def theme() -> Any:
    # System fonts only: the default theme would fetch Google Fonts, and this app is offline.
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def build_app(service: StudyService, extra_tabs: list[TabBuilder] | None = None) -> gr.Blocks:
    """The whole app around one service. ``extra_tabs`` are added after the built-in tabs (tests, plugins)."""
    with gr.Blocks(title="studybot", analytics_enabled=False) as app:
        gr.Markdown("## studybot\nAsk the ML interview handbooks; every answer cites its passages.",
                    elem_id="sb-header")
        with gr.Tabs():
            chat = build_chat_tab(service)
            library = build_library_tab(service)
            build_quiz_tab(service)
            build_review_tab(service)
            build_progress_tab(service)
            build_evals_tab(service)
            for builder in extra_tabs or []:
                builder(service)
        register_api(service)
        app.load(library["refresh"], None, library["refresh_outputs"], api_visibility="private", queue=False)
        app.load(chat["load"], None, [chat["saved"]], api_visibility="private", queue=False)
    limit = max(1, int(service.settings.ui.concurrency))
    app.queue(default_concurrency_limit=limit)
    return app


def launch(
    service: StudyService,
    *,
    host: str | None = None,
    port: int | None = None,
    auth: tuple[str, str] | None = None,
    block: bool = True,
    quiet: bool = False,
    app: gr.Blocks | None = None,
) -> tuple[gr.Blocks, str]:
    """Build (unless given) and start the app; returns it and its local URL. ``block=False`` returns at once."""
    settings = service.settings
    app = app or build_app(service)
    _, local_url, _ = app.launch(
        server_name=host or settings.ui.host,
        server_port=port or settings.ui.port,
        auth=auth,
        prevent_thread_lock=not block,
        quiet=quiet,
        share=False,
        inbrowser=False,
        show_error=False,
        max_file_size=f"{settings.ingest.max_file_mb:g}mb",
        ssr_mode=False,
        footer_links=["api"],
        run_history=False,
        theme=theme(),
        css=CSS,
        head=HEAD,
    )
    return app, local_url
