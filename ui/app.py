"""The Gradio web app: one :class:`ui.service.StudyService` (one model instance) behind a queue, one tab per
feature (Chat, Library, Quiz, Review, Progress, Evals). Study state (cards, reviews, saved conversations) is
the signed-in ``--auth`` user's, or the one local user's without a login. A tab builder takes the service and builds its ``gr.Tab`` inside the
current ``gr.Blocks``. Events that call the LLM pass ``concurrency_id=LLM_QUEUE`` to share the single-model
queue.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Gradio keeps uploaded files in GRADIO_TEMP_DIR (default /tmp/gradio); the app points it into the studybot
# home (use_upload_cache) unless the user set it before studybot started.
_USER_UPLOAD_CACHE = os.environ.get("GRADIO_TEMP_DIR") or None
UPLOAD_CACHE = "upload-cache"  # <home>/upload-cache

import gradio as gr  # noqa: E402

from ui import tab_library, tab_progress, tab_quiz, tab_review  # noqa: E402
from ui.tab_chat import LLM_QUEUE, build_chat_tab, register_api  # noqa: E402
from ui.tab_evals import build_evals_tab  # noqa: E402
from ui.tab_library import build_library_tab  # noqa: E402
from ui.tab_progress import build_progress_tab  # noqa: E402
from ui.tab_quiz import build_quiz_tab  # noqa: E402
from ui.tab_review import build_review_tab  # noqa: E402

if TYPE_CHECKING:
    from rag.settings import Settings
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
/* Chat: each turn's own sources (one shown at a time), passages as rendered Markdown, small saved-list buttons */
.sb-turn-src { display: flex; flex-direction: column; gap: 8px; }
.sb-turn-src[hidden] { display: none; }
.sb-turn-q { font-size: .9em; font-weight: 600; }
.sb-passage.sb-md { white-space: normal; }
.sb-md p { margin: 0 0 .5em 0; }
.sb-md ul, .sb-md ol { margin: 0 0 .5em 1.2em; padding: 0; }
.sb-md blockquote { margin: 0 0 .5em 0; padding-left: 8px; border-left: 3px solid var(--border-color-primary); }
.sb-md pre { white-space: pre-wrap; background: var(--background-fill-secondary); padding: 6px 8px;
             border-radius: 6px; margin: 0 0 .5em 0; font-size: .95em; }
.sb-md table { border-collapse: collapse; margin: 0 0 .5em 0; font-size: .95em; }
.sb-md th, .sb-md td { border: 1px solid var(--border-color-primary); padding: 2px 6px; }
.sb-math i { font-family: "Cambria Math", "STIX Two Math", serif; }
#sb-chat-note .sb-note { margin: 0; font-size: .9em; color: var(--body-text-color-subdued); }
#sb-saved-actions { justify-content: flex-start; gap: 8px; }
#sb-saved-actions button { flex: 0 0 auto; min-width: 72px; max-width: 110px; }
/* Chat: only #sb-wait shows the queue's progress; no other control is dimmed or gets a timer label. */
#sb-chatbot [data-testid="status-tracker"], #sb-sources [data-testid="status-tracker"],
#sb-question [data-testid="status-tracker"], #sb-export [data-testid="status-tracker"],
#sb-saved [data-testid="status-tracker"], #sb-chat-note [data-testid="status-tracker"] { display: none !important; }
/* Quiz and Review: after checking, the chosen and the right option coloured (their labels end in the words) */
#sb-quiz-options label[data-testid$="right answer-radio-label"],
#sb-quiz-options label[data-testid$="your choice, right-radio-label"] { border-color: #15803d; background: #dcfce7; transition: none; }
#sb-quiz-options label[data-testid$="✗ your choice-radio-label"] { border-color: #b91c1c; background: #fee2e2;
  transition: none; }
.sb-review-options li { margin: 2px 0; }
.sb-quiz-letter { font-weight: 700; margin-right: 2px; }
/* The one progress display of a quiz or a study guide: a bar that shimmers while the next step is worked on */
.sb-work { display: flex; flex-direction: column; gap: 4px; }
.sb-work-fill { transition: width .4s; }
.sb-work-busy { position: absolute; top: 0; bottom: 0; left: -30%; width: 30%;
                background: linear-gradient(90deg, transparent, var(--color-accent), transparent); opacity: .45;
                animation: sb-work-busy 1s linear infinite; }
@keyframes sb-work-busy { to { left: 100%; } }
"""

# Citation links [n] -> #src-n (#src-<turn>-<n> in the chat: that turn's part of the panel is shown first):
# scroll the source into view, open its passage and flash it (the chatbot may render links with
# target=_blank, so the click is handled here instead of by the browser).
HEAD = """
<script>
document.addEventListener("click", function (ev) {
  var a = ev.target && ev.target.closest ? ev.target.closest('a[href^="#src-"]') : null;
  if (!a) return;
  var el = document.getElementById(a.getAttribute("href").slice(1));
  ev.preventDefault(); ev.stopPropagation();
  if (!el) return;
  // A chat turn's sources (src-<turn>-<n>): show that turn's part of the panel, hide the others.
  var turn = el.closest(".sb-turn-src");
  if (turn) {
    turn.parentNode.querySelectorAll(".sb-turn-src").forEach(function (x) { x.hidden = x !== turn; });
    if (turn.parentNode.dataset) turn.parentNode.dataset.shown = turn.dataset.turn;
  }
  document.querySelectorAll(".sb-src.sb-flash").forEach(function (x) { x.classList.remove("sb-flash"); });
  var d = el.querySelector("details"); if (d) d.open = true;
  el.classList.add("sb-flash");
  el.scrollIntoView({behavior: "smooth", block: "nearest"});
  setTimeout(function () { el.classList.remove("sb-flash"); }, 2500);
}, true);
// A passage the student opened in the sources panel stays open when the panel is redrawn (as an answer
// comes in): nothing the student has in front of them closes or moves.
var sbOpen = new Set();  // "<conversation>|<source id>"
function sbKey(src) {
  var panel = src.closest(".sb-sources");
  return (panel && panel.dataset.conv || "") + "|" + src.id;
}
document.addEventListener("toggle", function (ev) {
  var d = ev.target, src = d && d.tagName === "DETAILS" && d.closest ? d.closest("#sb-sources .sb-src") : null;
  if (!src || !src.id) return;
  if (d.open) sbOpen.add(sbKey(src)); else sbOpen.delete(sbKey(src));
}, true);
new MutationObserver(function () {
  document.querySelectorAll("#sb-sources .sb-src").forEach(function (src) {
    var d = src.querySelector("details");
    if (d && !d.open && sbOpen.has(sbKey(src))) d.open = true;
  });
}).observe(document.documentElement, {childList: true, subtree: true});
</script>
"""


def theme() -> Any:
    # System fonts only: the default theme would fetch Google Fonts, and this app is offline.
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def use_upload_cache(settings: Settings) -> Path:
    """Point Gradio's upload cache at ``<home>/upload-cache`` (or the GRADIO_TEMP_DIR the user set): uploaded
    bytes stay with the rest of studybot's state, not in /tmp/gradio. Gradio reads the variable when a
    Blocks, its components and its server are created and when it checks a request's file paths, so this runs
    before each (one app per process: the last one set wins)."""
    folder = Path(_USER_UPLOAD_CACHE) if _USER_UPLOAD_CACHE else settings.storage.home / UPLOAD_CACHE
    folder = folder.expanduser().resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


# Uploaded files are deleted from the cache once the Library tab has handled them; one chosen but never added
# goes after a day (checked hourly), and all of them when the server stops. Gradio's delete_cache (how often,
# how old, in seconds): set by hand with the ingest faults work (2026-12-05), not tuned.
DELETE_CACHE = (3600, 86400)


def build_app(service: StudyService, extra_tabs: list[TabBuilder] | None = None) -> gr.Blocks:
    """The whole app around one service. ``extra_tabs`` are added after the built-in tabs (tests, plugins)."""
    use_upload_cache(service.settings)
    with gr.Blocks(title="studybot", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
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
    use_upload_cache(settings)
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
        css=CSS + tab_library.CSS + tab_quiz.CSS + tab_review.CSS + tab_progress.CSS,
        head=HEAD,
    )
    return app, local_url
