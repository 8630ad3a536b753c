"""The answer path: retrieve -> gather candidate units -> rank -> select quotes -> explain -> verify -> cite.

::

    pipeline = AnswerPipeline(retriever, lambda: llm, settings, embedder=embedder)
    answer = pipeline.ask("What does L1 regularization do?")        # an Answer
    for event in pipeline.stream("..."):                               # rag.answer.events, in order
        ...

Each step is a method with a typed input and output, composed by a LangChain runnable (:meth:`chain`):

1. :meth:`retrieve` (:class:`Request` -> :class:`Retrieved`): hybrid retrieval of ``top_k`` passages;
2. :meth:`gather` (-> :class:`Gathered`): refuses without the model when retrieval found nothing close
   (``evidence``: best dense similarity below ``min_evidence_similarity``) or the question names a term no
   handbook mentions (``unknown_term``, :mod:`rag.terms`); otherwise cuts the passages into quotable units,
   whole, in the cheap scorer's order (:mod:`rag.answer.rank`);
3. :meth:`rank` (-> :class:`Ranked`): the model judges the scorer's first ``judge_top_k`` units, one at a
   time (log-odds of "yes, this answers it"), and they are reordered by ``scorer + judge_weight x judge``;
4. :meth:`select` (-> :class:`Selected`): the quotes (:mod:`rag.answer.select`), and the model's log-odds that
   they answer the question together; refuses (``no_answer``) when those are below ``refuse_below_answers``
   (:func:`refuses`);
5. :meth:`explain` (-> :class:`Explained`): one or two sentences from the quotes alone, each verified before
   it is shown (:mod:`rag.answer.explain`, :mod:`rag.answer.verify`);
6. :meth:`cite` (-> :class:`Answer`): the quotes and the explanation as one Markdown text with their ``[n]``
   markers (never inside code), the citations, the timings.

A refusal is decided before anything but the sources is shown; once quotes are shown, the answer stands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rag.answer.events import AnswerEvent, Delta, Finished, Passages, Quotes, Stage
from rag.answer.explain import Explainer, Explanation
from rag.answer.passages import candidate_passages
from rag.answer.rank import Candidate, Judge, Ranking, Scorer, rank
from rag.answer.select import Quote, answers_logodds, choose, quotes
from rag.answer.verify import Check, Verifier
from rag.prompts import REFUSAL
from rag.settings import AnswerSettings, Settings
from rag.terms import named_terms, unmentioned
from rag.types import Citation, Passage

if TYPE_CHECKING:
    from rag.backends.embeddings import TextEmbedder
    from rag.llm import LLM
    from rag.retrieval import Retriever

RefusalReason = Literal["evidence", "unknown_term", "no_answer"]
# The condensed (standalone) question's token cap: a question of ~50 words; a design choice of the first chat,
# not tuned (a longer rewrite is cut, then checked like any question).
CONDENSE_MAX_TOKENS = 64


# -- the steps' types ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    question: str
    k: int
    max_tokens: int
    t0: float  # perf_counter() when the request came in


@dataclass(frozen=True)
class Retrieved:
    request: Request
    question: str  # checked (stripped, not empty, not too long)
    passages: list[Passage]
    evidence: float  # the best dense similarity among them
    seconds: float


@dataclass(frozen=True)
class Gathered:
    retrieved: Retrieved
    passages: list[Passage]  # the candidate passages: [n] = passages[n-1] ([] when refused here)
    candidates: list[Candidate]  # every quotable unit, the scorer's order
    refusal: RefusalReason | None = None
    missing_terms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ranked:
    gathered: Gathered
    ranking: Ranking


@dataclass(frozen=True)
class Signals:
    """What the refusal decides on (:func:`refuses`)."""

    evidence: float  # the best dense similarity of the retrieved passages
    best_judge: float | None  # the model's best log-odds that one judged unit answers
    answers: float | None  # the model's log-odds that the chosen quotes together answer


def refuses(signals: Signals, s: AnswerSettings) -> bool:
    """Whether the handbooks do not answer: the model judged the chosen quotes, together, not to answer the
    question (log-odds below ``refuse_below_answers``). The best unit's judgement is kept for reports: added to
    the rule, it did not separate answerable from unanswerable questions better (settings' provenance)."""
    return signals.answers is not None and signals.answers < s.refuse_below_answers


@dataclass(frozen=True)
class Selected:
    ranked: Ranked
    quotes: list[Quote]  # [] when refused
    refusal: RefusalReason | None
    seconds: float  # from the request's start to the quotes being ready
    signals: Signals | None = None


@dataclass(frozen=True)
class Explained:
    selected: Selected
    explanation: Explanation


@dataclass
class Answer:
    """What the student gets. ``answer``: everything shown, as Markdown with ``[n]`` markers (the quotes as
    block quotes, then the explanation); ``[n]`` is ``passages[n-1]``."""

    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage]
    quotes: list[Quote] = field(default_factory=list)
    explanation: str = ""
    refusal_reason: RefusalReason | None = None
    missing_terms: list[str] = field(default_factory=list)  # named in the question, in no handbook
    timings: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)  # every explanation sentence's verdict
    retrieved: list[Passage] = field(default_factory=list)
    ranking: Ranking | None = None
    raw: str = ""  # the model's explanation as written

    @property
    def dropped(self) -> int:
        """Explanation sentences removed because the quotes do not state them."""
        return sum(1 for c in self.checks if not c.supported)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "missing_terms": list(self.missing_terms),
            "quotes": [q.to_json() for q in self.quotes],
            "explanation": self.explanation,
            "citations": [c.to_json() for c in self.citations],
            "dropped": self.dropped,
            "timings": dict(self.timings),
        }


def blockquote(markdown: str) -> str:
    """``markdown`` as a Markdown block quote (every line behind "> ")."""
    return "\n".join("> " + line if line.strip() else ">" for line in markdown.splitlines())


def compose(quoted: list[Quote], explanation: str) -> str:
    """The whole answer as Markdown: the quotes, then the explanation."""
    parts = [blockquote(q.marked()) for q in quoted]
    if explanation.strip():
        parts.append(explanation.strip())
    return "\n\n".join(parts)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class AnswerPipeline:
    """The answer path over a retriever and an LLM (given as a zero-argument factory, so the model is loaded
    only when a question passes the gates). ``embedder``: the retrieval embedder, for the unit scorer."""

    def __init__(self, retriever: Retriever, llm: Callable[[], LLM] | LLM, settings: Settings, *,
                 embedder: TextEmbedder | None = None) -> None:
        self.retriever = retriever
        self._llm_factory: Callable[[], LLM] = (
            llm if callable(llm) and not hasattr(llm, "stream") else (lambda: llm))  # type: ignore[assignment,return-value]
        self.settings = settings
        s = settings.answer
        self.scorer = Scorer(s, embedder, idf=retriever.idf)
        self.judge = Judge(self._llm_factory)
        self.verifier = Verifier(s, self._llm_factory, embedder.embed if embedder is not None else None)
        self.explainer = Explainer(self._llm_factory, self.verifier, s.explain_max_sentences)
        self._chain: Any = None
        self._prefix_kept = False
        self._prefix_lock = threading.Lock()

    @property
    def llm(self) -> LLM:
        return self._llm_factory()

    def keep_prefix(self) -> None:
        """Keep the answer prompt's fixed prefix evaluated (:func:`warm_up`), once, before the first model call:
        the judge's prompts take the KV cache between it and the quotes' prompts, and without the kept prefix
        each question evaluated it again (10 s of the 16 s a gold question took when `studybot eval`, which
        never called warm_up, answered; 2026-12-06, 2-core machine). A caller's own warm_up makes this free."""
        if self._prefix_kept:
            return
        with self._prefix_lock:
            if not self._prefix_kept:
                warm_up(self.llm)
                self._prefix_kept = True

    def request(self, question: str, k: int | None = None, max_tokens: int | None = None) -> Request:
        return Request(question, k or self.settings.retrieval.top_k,
                       max_tokens or self.settings.answer.explain_max_tokens, time.perf_counter())

    # -- the steps ---------------------------------------------------------------------------------------
    def retrieve(self, req: Request) -> Retrieved:
        question = self.retriever.check_question(req.question)
        t = time.perf_counter()
        passages = self.retriever.retrieve(question, req.k)
        sims = [float(p.extra["similarity"]) for p in passages if "similarity" in p.extra]
        return Retrieved(req, question, passages, max(sims, default=0.0), time.perf_counter() - t)

    def missing_terms(self, question: str) -> list[str]:
        """The question's named terms that no indexed handbook mentions."""
        if not self.settings.answer.check_terms:
            return []
        if not named_terms(question):
            return []
        return unmentioned(question, self.retriever.vocabulary())

    def gather(self, r: Retrieved) -> Gathered:
        if not r.passages or r.evidence < self.settings.answer.min_evidence_similarity:
            return Gathered(r, [], [], "evidence")
        missing = self.missing_terms(r.question)
        if missing:
            return Gathered(r, [], [], "unknown_term", missing)
        passages = candidate_passages(r.passages)
        cands = self.scorer.candidates(r.question, passages)
        return Gathered(r, passages, cands, None if cands else "evidence")

    def rank(self, g: Gathered) -> Ranked:
        s = self.settings.answer
        if g.refusal is not None:
            return Ranked(g, Ranking([]))
        question = g.retrieved.question
        self.keep_prefix()
        ranking = rank(g.candidates, lambda cs: self.judge.score(question, cs), top=s.judge_top_k,
                       weight=s.judge_weight)
        return Ranked(g, ranking)

    def select(self, r: Ranked) -> Selected:
        s = self.settings.answer
        t0 = r.gathered.retrieved.request.t0
        if r.gathered.refusal is not None:
            return Selected(r, [], r.gathered.refusal, time.perf_counter() - t0)
        chosen = choose(r.ranking, max_quotes=s.max_quotes, min_logodds=s.quote_min_logodds, margin=s.quote_margin)
        quoted = quotes(chosen, r.gathered.passages)
        answers = answers_logodds(self.llm, r.gathered.retrieved.question, quoted) if s.check_answers else None
        signals = Signals(r.gathered.retrieved.evidence, r.ranking.best_judge, answers)
        if refuses(signals, s):
            return Selected(r, [], "no_answer", time.perf_counter() - t0, signals)
        return Selected(r, quoted, None, time.perf_counter() - t0, signals)

    def explain(self, sel: Selected) -> Generator[AnswerEvent, None, Explained]:
        """Streams :class:`Stage` and verified :class:`Delta` events; returns the :class:`Explained` step."""
        if sel.refusal is not None or not sel.quotes:
            return Explained(sel, Explanation())
        req = sel.ranked.gathered.retrieved.request
        question = sel.ranked.gathered.retrieved.question
        yield Stage("explaining", round(time.perf_counter() - req.t0, 3))
        explanation = yield from self.explainer.run(question, sel.quotes, req.max_tokens, req.t0)
        return Explained(sel, explanation)

    def cite(self, e: Explained) -> Answer:
        sel = e.selected
        g = sel.ranked.gathered
        r = g.retrieved
        ex = e.explanation
        ranking = sel.ranked.ranking
        timings: dict[str, Any] = {
            "retrieval_ms": _ms(r.seconds),
            "rank_s": ranking.seconds,
            "judged": ranking.judged,
            "quotes_s": round(sel.seconds, 3) if sel.quotes else None,
            "ttft_s": ex.ttft_s,
            "explain_s": ex.generate_s,
            "verify_s": ex.verify_s,
            "total_s": round(time.perf_counter() - r.request.t0, 3),
            "prompt_tokens": ex.usage.prompt_tokens if ex.usage else 0,
            "completion_tokens": ex.usage.completion_tokens if ex.usage else 0,
            "evidence": round(r.evidence, 4),
            "best_judge": ranking.best_judge,
            "answers": sel.signals.answers if sel.signals else None,
        }
        base: dict[str, Any] = {"question": r.question, "timings": timings, "retrieved": r.passages,
                                "missing_terms": list(g.missing_terms), "ranking": ranking}
        if sel.refusal is not None:
            return Answer(answer=REFUSAL, refused=True, citations=[], passages=g.passages,
                          refusal_reason=sel.refusal, **base)
        cited = sorted({q.citation.n for q in sel.quotes})
        text = compose(sel.quotes, ex.text)  # quotes carry their markers outside code (Quote.marked), and the
        # explanation's sentences were placed already: never move a "[0]" out of the handbook's own code
        return Answer(answer=text, refused=False, citations=[Citation.of(n, g.passages[n - 1].chunk) for n in cited],
                      passages=g.passages, quotes=sel.quotes, explanation=ex.text, checks=ex.checks, raw=ex.reply,
                      **base)

    # -- composition --------------------------------------------------------------------------------------
    def _explain_all(self, sel: Selected) -> Explained:
        gen = self.explain(sel)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                result: Explained = done.value
                return result

    def chain(self) -> Any:
        """The whole path as a LangChain runnable over a :class:`Request` (returns an :class:`Answer`)."""
        if self._chain is None:
            from langchain_core.runnables import RunnableLambda

            self._chain = (
                RunnableLambda(self.retrieve, name="retrieve")
                | RunnableLambda(self.gather, name="gather")
                | RunnableLambda(self.rank, name="rank")
                | RunnableLambda(self.select, name="select")
                | RunnableLambda(self._explain_all, name="explain")
                | RunnableLambda(self.cite, name="cite")
            ).with_config(run_name="studybot_answer")
        return self._chain

    def ask(self, question: str, *, k: int | None = None, max_tokens: int | None = None) -> Answer:
        result: Answer = self.chain().invoke(self.request(question, k, max_tokens))
        return result

    def stream(self, question: str, *, k: int | None = None, max_tokens: int | None = None
               ) -> Iterator[AnswerEvent]:
        """The same steps, with events between them (:mod:`rag.answer.events`)."""
        req = self.request(question, k, max_tokens)
        yield Stage("retrieving", 0.0)
        g = self.gather(self.retrieve(req))
        yield Passages(list(g.passages))
        if g.refusal is None:
            yield Stage("ranking", round(time.perf_counter() - req.t0, 3))
        sel = self.select(self.rank(g))
        if sel.refusal is not None:
            yield Delta(REFUSAL)
            yield Finished(self.cite(Explained(sel, Explanation())))
            return
        yield Quotes(list(sel.quotes), round(sel.seconds, 3))
        explained = yield from self.explain(sel)
        yield Finished(self.cite(explained))


def warm_up(llm: LLM) -> int:
    """Load the model and keep the answer path's fixed prompt prefix evaluated (from the state the last process
    saved when there is one); returns its length in tokens. Touches nothing but the model, so it can run in a
    thread beside retrieval."""
    from rag import prompts

    return llm.keep_prefix(prompts.answer_messages("")[:-1])



