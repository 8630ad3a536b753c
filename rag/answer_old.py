"""Grounded, cited answers: the retrieve -> pack -> prompt -> model -> cite pipeline (a LangChain runnable).

::

    pipeline = AnswerPipeline(retriever, lambda: llm, settings, embedder=embedder)
    answer = pipeline.ask("What does L1 regularization do?")        # an Answer
    for event in pipeline.stream("..."):                               # rag.events: Passages, Delta..., Finished
        ...

The steps pass one typed :class:`AnswerState` along (retrieval, evidence, packed passages, prompt) and the
model's :class:`Generation`; :meth:`AnswerPipeline.parse` turns both into an :class:`Answer`.

**Evidence-first** (``settings.answer.evidence_first``, the default):

1. ``evidence``: the best dense similarity of the retrieved passages is below ``min_evidence_similarity`` -
   refused without calling the model (no lead);
2. ``unknown_term``: the question names a term (a name or acronym, :mod:`rag.terms`) that no handbook
   mentions ("Mahalanobis", "CUPED"; "XGBoost-style" is a mention of XGBoost) - refused without calling
   the model (``Answer.missing_terms``);
3. :class:`rag.evidence.EvidenceSelector` picks the sentences, list items and code blocks that answer the
   question (about 270 prompt tokens instead of 600 of whole passages); the best of them is the **lead**
   (:class:`rag.events.LeadReady`), the handbook's own words shown before the model starts;
4. ``model``: the model is told to reply with :data:`~rag.prompts.REFUSAL` when the excerpts do not answer;
   a refusal gets a *second look* as below, and stands when the second reply is a refusal too;
5. ``unsupported``: each sentence of the reply is verified against the passage it cites
   (:class:`rag.verify.Verifier`); failing sentences are dropped, and the answer is refused only when none
   passes. Every kept sentence carries its passage's marker, never inside code. A refusal has no lead.

**Whole passages** (``evidence_first=False``; the previous pipeline, kept for ``bench/answer_compare.py``):

1. ``evidence``: the best dense similarity of the retrieved passages is below ``min_evidence_similarity`` -
   refused without calling the model;
2. ``unknown_term``: the question names a term (a name or acronym, :mod:`rag.terms`) that no handbook
   mentions ("Mahalanobis", "CUPED") - refused without calling the model (``Answer.missing_terms``);
3. ``model``: the model is told to reply with :data:`~rag.prompts.REFUSAL` when the passages do not answer.
   A small model also says it for questions the passages do answer in other words, so on such a reply the
   pipeline takes a *second look* (``second_look``): it generates once more from the same prompt (the KV
   cache holds it: about 1-3 s) with the refusal's first word suppressed, and the answer it gets goes
   through the grounding check below. Only when that reply is a refusal too is the refusal the model's. There
   is no second look when the question names a term the given passages do not mention (a forced answer
   would come from memory). While the streamed reply could still be the refusal sentence it is held back,
   so a user never sees a refusal followed by an answer;
4. ``unsupported``: the model answered from memory. The reply states a number that neither the passages nor
   the question contain ("usually around 0.9"); or it adds no content word to the question's own (it only
   restates it); or it puts a citation marker where its content should be ("is given by the formula:
   [3]"); or its content words mostly do not occur in the passages (support below ``min_support``) and it is
   not a paraphrase of them: its sentences are not close to passage sentences (mean embedding similarity
   below ``min_semantic_support``), or retrieval found nothing close (best dense similarity below
   ``min_paraphrase_evidence``), or the question names a term the passages do not mention ("What learning
   rate was used to train GPT-4?" over passages on learning rates).

A small model often forgets its ``[n]`` markers: when a reply cites nothing, sentences whose content words
clearly come from one passage, or that closely paraphrase one of its sentences (embedding similarity at
least ``min_attribution_similarity``), get that passage's marker (``auto_cited`` counts them); ``uncited``
is true when the final answer still cites nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rag import prompts
from rag.citations import CitationFilter, map_citations, place_outside_code
from rag.context import MIN_TAIL_TOKENS, Packed, pack
from rag.errors import QueryError
from rag.events import AnswerEvent, Delta, Finished, LeadReady, Passages
from rag.evidence import Evidence, EvidenceSelector, Lead
from rag.grounding import GroundingPolicy, RefusalReason, is_refusal, refusal_norm
from rag.llm import LLM, Usage
from rag.prompts import REFUSAL
from rag.settings import Settings
from rag.terms import missing_terms, named_terms
from rag.types import Citation, Passage
from rag.verify import Verification, Verifier

if TYPE_CHECKING:
    from rag.embeddings import TextEmbedder
    from rag.retrieval import Retriever

CONDENSE_MAX_TOKENS = 64
STOP = ["</passage", "<passages>", "\nQuestion:"]
# Room kept for the chat template's role markers around each message.
TEMPLATE_TOKENS = 6
Messages = list[dict[str, str]]


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool
    uncited: bool
    citations: list[Citation]
    passages: list[Passage]  # exactly what the model was given, [n] = passages[n-1]
    invalid_citations: int = 0
    timings: dict[str, Any] = field(default_factory=dict)
    refusal_reason: RefusalReason | None = None  # "evidence" and "unknown_term" come without a model call
    missing_terms: list[str] = field(default_factory=list)  # named in the question, in no handbook
    second_look: bool = False  # the model refused first and was asked once more (see the module doc)
    auto_cited: int = 0  # markers added by attribution because the model cited nothing
    raw: str = ""  # the model's reply before cleaning
    retrieved: list[Passage] = field(default_factory=list)  # before packing (for reports and debugging)
    lead: Lead | None = None  # the handbook's own words, shown first (evidence-first answers; None if refused)
    dropped: int = 0  # answer sentences removed because their passage does not state them (rag.verify)
    verification: Verification | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "uncited": self.uncited,
            "invalid_citations": self.invalid_citations,
            "auto_cited": self.auto_cited,
            "missing_terms": list(self.missing_terms),
            "second_look": self.second_look,
            "citations": [c.to_json() for c in self.citations],
            "lead": self.lead.to_json() if self.lead is not None else None,
            "dropped": self.dropped,
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class AnswerState:
    """What the steps before the model pass along."""

    question: str
    k: int
    max_tokens: int
    t0: float  # perf_counter() when the request came in
    retrieved: list[Passage] = field(default_factory=list)
    retrieval_ms: float = 0.0
    evidence: float = 0.0  # best dense similarity of the retrieved passages
    pack_ms: float = 0.0
    packed: Packed | None = None  # None: refused before the model (refusal_reason says why)
    refusal_reason: RefusalReason | None = None
    missing_terms: list[str] = field(default_factory=list)
    messages: Messages | None = None
    evidence_sel: Evidence | None = None  # evidence-first: the selected sentences (packed holds them too)
    lead_s: float | None = None  # seconds from t0 to the lead being ready


@dataclass(frozen=True)
class Generation:
    """What the model replied (after a second look: the second reply, ``first_reply`` the refusal)."""

    reply: str | None = None
    usage: Usage | None = None
    ttft_s: float | None = None
    first_reply: str | None = None
    second_look_s: float | None = None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class AnswerPipeline:
    """The answer chain over a retriever and an LLM (given as a zero-argument factory so the model is only
    loaded when a question passes the evidence check). ``embedder``: for the semantic grounding checks and
    auto-citations (without one, a reply with low word support is refused)."""

    def __init__(self, retriever: Retriever, llm: Callable[[], LLM] | LLM, settings: Settings, *,
                 embedder: TextEmbedder | None = None) -> None:
        self.retriever = retriever
        self._llm_factory: Callable[[], LLM] = (
            llm if callable(llm) and not hasattr(llm, "stream") else (lambda: llm))  # type: ignore[assignment,return-value]
        self.settings = settings
        self.policy = GroundingPolicy(settings.answer, embedder.embed if embedder is not None else None)
        self.selector = EvidenceSelector(settings.answer, embedder, idf=retriever.idf)
        self.verifier = Verifier(embedder.embed if embedder is not None else None,
                                 use_model=settings.answer.verify_with_model,
                                 max_checks=settings.answer.verify_max_sentences,
                                 min_word_support=settings.answer.verify_min_word_support)
        self._fixed_tokens: int | None = None
        self._prepare: Any = None
        self._chain: Any = None

    @property
    def llm(self) -> LLM:
        return self._llm_factory()

    # -- the steps before the model --------------------------------------------------------------------
    def _retrieve(self, st: AnswerState) -> AnswerState:
        question = self.retriever.check_question(st.question)
        t = time.perf_counter()
        retrieved = self.retriever.retrieve(question, st.k)
        return replace(st, question=question, retrieved=retrieved, retrieval_ms=_ms(time.perf_counter() - t))

    @staticmethod
    def evidence(passages: list[Passage]) -> float:
        """The best dense similarity among the retrieved passages (0 when there is none)."""
        sims = [float(p.extra["similarity"]) for p in passages if "similarity" in p.extra]
        return max(sims, default=0.0)

    def missing_terms(self, question: str) -> list[str]:
        """The question's named terms that no indexed handbook mentions."""
        if not self.settings.answer.check_terms:
            return []
        terms = named_terms(question)
        if not terms:
            return []
        vocab = self.retriever.vocabulary()
        return [t for t in terms if not vocab.mentions(t)]

    def _budget(self, question: str, max_tokens: int) -> int:
        llm = self.llm
        if self._fixed_tokens is None:
            self._fixed_tokens = (
                sum(llm.count_tokens(m["content"]) + TEMPLATE_TOKENS for m in self.messages("", ""))
            )
        room = llm.n_ctx - max_tokens - self._fixed_tokens - llm.count_tokens(question)
        if room < MIN_TAIL_TOKENS:
            raise QueryError(
                f"The question is too long for the model's context window ({llm.n_ctx} tokens with "
                f"{max_tokens} kept for the answer): shorten it or ask about one topic at a time."
            )
        return min(self.settings.answer.context_budget_tokens, room)

    def _pack(self, st: AnswerState) -> AnswerState:
        t = time.perf_counter()
        evidence = self.evidence(st.retrieved)
        if not st.retrieved or evidence < self.settings.answer.min_evidence_similarity:
            return replace(st, evidence=evidence, refusal_reason="evidence")
        missing = self.missing_terms(st.question)
        if missing:
            return replace(st, evidence=evidence, missing_terms=missing, pack_ms=_ms(time.perf_counter() - t),
                           refusal_reason="unknown_term")
        budget = self._budget(st.question, st.max_tokens)
        if self.settings.answer.evidence_first:
            sel = self.selector.select(st.question, st.retrieved, self.llm.count_tokens,
                                       min(budget, self.settings.answer.evidence_budget_tokens))
            if not sel.passages:
                return replace(st, evidence=evidence, pack_ms=_ms(time.perf_counter() - t), refusal_reason="evidence")
            packed = Packed(passages=sel.passages, text=sel.text, tokens=sel.tokens, budget=budget)
            return replace(st, packed=packed, evidence=evidence, evidence_sel=sel,
                           pack_ms=_ms(time.perf_counter() - t), lead_s=round(time.perf_counter() - st.t0, 3))
        packed = pack(st.retrieved, self.llm.count_tokens, budget)
        return replace(st, packed=packed, evidence=evidence, pack_ms=_ms(time.perf_counter() - t))

    def _prompt(self, st: AnswerState) -> AnswerState:
        if st.packed is None:
            return st
        return replace(st, messages=self.messages(st.packed.text, st.question))

    @staticmethod
    def messages(passages_block: str, question: str) -> Messages:
        """The fixed part first (system message and example turns: reused from the KV cache), then the
        passages and the question."""
        return [
            {"role": "system", "content": prompts.system_prompt()},
            *prompts.examples(),
            {"role": "user", "content": prompts.user_prompt(passages_block, question)},
        ]

    # -- the model ---------------------------------------------------------------------------------------
    def _model(self, st: AnswerState) -> tuple[AnswerState, Generation]:
        gen = self._generate(st)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                return st, done.value

    def _generate(self, st: AnswerState) -> Generator[Delta, None, Generation]:
        """Stream the model's reply as :class:`Delta` events (invalid citation markers removed; text that could
        still be the refusal sentence held back); returns the :class:`Generation`. A refusal gets a second
        look (see the module doc). Nothing is generated when there are no messages."""
        if st.messages is None or st.packed is None:
            return Generation()
        llm = self.llm
        reply, ttft = yield from self._one_pass(st, llm, None)
        if not (self.settings.answer.second_look and getattr(llm, "supports_suppress", False)
                and self._is_refusal(reply, st.packed) and not self._names_absent_from_passages(st)):
            return Generation(reply, llm.last_usage, ttft)
        first = llm.last_usage
        t = time.perf_counter()
        again, _ = yield from self._one_pass(st, llm, [REFUSAL.split()[0]])
        second = llm.last_usage
        usage = Usage(prompt_tokens=first.prompt_tokens,
                      completion_tokens=first.completion_tokens + second.completion_tokens,
                      ttft_s=first.ttft_s, total_s=first.total_s + second.total_s,
                      finish_reason=second.finish_reason)
        return Generation(again, usage, ttft, first_reply=reply, second_look_s=round(time.perf_counter() - t, 3))

    def _names_absent_from_passages(self, st: AnswerState) -> list[str]:
        """Named terms of the question that the given passages do not mention. The handbooks mention them
        (else the question was refused before the model), but not where the model looked: a refusal then
        stands, as a forced answer could only come from memory ("... to train GPT-4")."""
        if not self.settings.answer.check_terms or st.packed is None:
            return []
        texts = [f"{p.chunk.title}\n{p.chunk.section}\n{p.chunk.text}" for p in st.packed.passages]
        return missing_terms(st.question, texts)

    @staticmethod
    def _is_refusal(reply: str, packed: Packed) -> bool:
        mapped = map_citations(reply, packed.passages)
        return is_refusal(mapped.text, bool(mapped.citations))

    def _one_pass(self, st: AnswerState, llm: LLM, suppress: list[str] | None
                  ) -> Generator[Delta, None, tuple[str, float | None]]:
        """One generation, streamed as deltas; returns ``(reply, ttft_s)`` (``yield from`` value)."""
        assert st.packed is not None and st.messages is not None
        filt = CitationFilter(len(st.packed.passages))
        pieces: list[str] = []
        held = ""  # shown text not yet yielded: while the reply could still be the refusal sentence
        ttft: float | None = None
        target = refusal_norm(REFUSAL)
        kwargs: dict[str, Any] = {"suppress": suppress} if suppress else {}
        stream = llm.stream(st.messages, max_tokens=st.max_tokens, temperature=self.settings.llm.temperature,
                            stop=STOP, **kwargs)
        try:
            for piece in stream:
                if ttft is None:
                    ttft = time.perf_counter() - st.t0
                pieces.append(piece)
                held += filt.feed(piece)
                so_far = refusal_norm("".join(pieces))
                if held and not target.startswith(so_far):
                    yield Delta(held)
                    held = ""
                if len(pieces) % 4 == 0 and so_far.startswith(target):
                    break  # the model refused: no need to let it ramble on
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # releases the local backend's generation lock at once
        held += filt.flush()
        reply = "".join(pieces)
        if held and not target.startswith(refusal_norm(reply)):
            yield Delta(held)
        return reply, ttft

    # -- the reply -> an Answer --------------------------------------------------------------------------
    def parse(self, st: AnswerState, gen: Generation) -> Answer:
        """The :class:`Answer` for a prepared request and the model's reply (refusal, citations, timings)."""
        packed = st.packed
        timings: dict[str, Any] = {
            "retrieval_ms": st.retrieval_ms,
            "pack_ms": st.pack_ms,
            "ttft_s": round(gen.ttft_s, 3) if gen.ttft_s is not None else None,
            "total_s": round(time.perf_counter() - st.t0, 3),
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "context_tokens": packed.tokens if packed else 0,
            "evidence": round(st.evidence, 4),
        }
        if gen.usage is not None:
            timings.update(
                prompt_tokens=gen.usage.prompt_tokens,
                completion_tokens=gen.usage.completion_tokens,
                llm_ttft_s=round(gen.usage.ttft_s, 3) if gen.usage.ttft_s is not None else None,
                llm_total_s=round(gen.usage.total_s, 3),
            )
        if gen.second_look_s is not None:
            timings["second_look_s"] = gen.second_look_s
        base: dict[str, Any] = {"question": st.question, "timings": timings, "retrieved": st.retrieved,
                                "missing_terms": list(st.missing_terms), "second_look": gen.first_reply is not None}
        if packed is None:
            return Answer(answer=REFUSAL, refused=True, uncited=False, citations=[], passages=[],
                          refusal_reason=st.refusal_reason or "evidence", **base)
        reply = gen.reply or ""
        if st.evidence_sel is not None:
            return self._parse_verified(st, gen, reply, base)
        verdict = self.policy.judge(reply, packed.passages, st.question, st.evidence,
                                    lambda: bool(self._names_absent_from_passages(st)))
        timings.update(verdict.checks)
        mapped = verdict.mapped
        if verdict.refused:
            return Answer(answer=REFUSAL, refused=True, uncited=False, citations=[], passages=packed.passages,
                          invalid_citations=mapped.invalid, refusal_reason=verdict.reason, raw=reply, **base)
        return Answer(answer=place_outside_code(mapped.text), refused=False, uncited=mapped.uncited,
                      citations=mapped.citations,
                      passages=packed.passages, invalid_citations=mapped.invalid, auto_cited=verdict.auto_cited,
                      raw=reply, **base)

    def _parse_verified(self, st: AnswerState, gen: Generation, reply: str, base: dict[str, Any]) -> Answer:
        """Evidence-first: the model's refusal stands; otherwise each sentence is verified (rag.verify) and the
        answer keeps the supported ones, each cited; nothing supported is a refusal."""
        assert st.packed is not None and st.evidence_sel is not None
        passages = st.packed.passages
        mapped = map_citations(reply, passages)
        timings = base["timings"]
        timings["lead_s"] = st.lead_s
        if is_refusal(mapped.text, bool(mapped.citations)):
            return Answer(answer=REFUSAL, refused=True, uncited=False, citations=[], passages=passages,
                          invalid_citations=mapped.invalid, refusal_reason="model", raw=reply, **base)
        ver = self.verifier.verify(mapped.text, reply, passages, st.question, st.messages, self.llm)
        timings["verify_s"] = ver.seconds
        timings["checked"] = len(ver.checks)
        final = map_citations(ver.text, passages)
        if ver.kept == 0 or not final.citations:
            return Answer(answer=REFUSAL, refused=True, uncited=False, citations=[], passages=passages,
                          invalid_citations=mapped.invalid, refusal_reason="unsupported", raw=reply,
                          dropped=ver.dropped, verification=ver, **base)
        return Answer(answer=final.text, refused=False, uncited=False, citations=final.citations, passages=passages,
                      invalid_citations=mapped.invalid, raw=reply, lead=st.evidence_sel.lead, dropped=ver.dropped,
                      verification=ver, **base)

    # -- the runnables -----------------------------------------------------------------------------------
    def prepare_chain(self) -> Any:
        """retrieve -> pack -> prompt (a LangChain runnable over an :class:`AnswerState`)."""
        if self._prepare is None:
            from langchain_core.runnables import RunnableLambda

            self._prepare = (
                RunnableLambda(self._retrieve, name="retrieve")
                | RunnableLambda(self._pack, name="pack_context")
                | RunnableLambda(self._prompt, name="prompt")
            ).with_config(run_name="studybot_prepare")
        return self._prepare

    def chain(self) -> Any:
        """The whole pipeline: retrieve -> pack -> prompt -> model -> parse citations (returns an Answer)."""
        if self._chain is None:
            from langchain_core.runnables import RunnableLambda

            self._chain = (
                self.prepare_chain()
                | RunnableLambda(self._model, name="model")
                | RunnableLambda(lambda sg: self.parse(*sg), name="parse_citations")
            ).with_config(run_name="studybot_answer")
        return self._chain

    def request(self, question: str, k: int | None = None, max_tokens: int | None = None) -> AnswerState:
        return AnswerState(question=question, k=k or self.settings.retrieval.top_k,
                           max_tokens=max_tokens or self.settings.llm.max_tokens, t0=time.perf_counter())

    # -- public API --------------------------------------------------------------------------------------
    def prepare(self, question: str, *, k: int | None = None, max_tokens: int | None = None) -> AnswerState:
        """Retrieval, evidence, packing and the prompt, without the model (benches re-score dumped replies
        through :meth:`parse`)."""
        result: AnswerState = self.prepare_chain().invoke(self.request(question, k, max_tokens))
        return result

    def ask(self, question: str, *, k: int | None = None, max_tokens: int | None = None) -> Answer:
        result: Answer = self.chain().invoke(self.request(question, k, max_tokens))
        return result

    def stream(self, question: str, *, k: int | None = None, max_tokens: int | None = None
               ) -> Iterator[AnswerEvent]:
        """Events: the passages (before generation), text deltas, then the final answer."""
        st = self.prepare(question, k=k, max_tokens=max_tokens)
        yield Passages(list(st.packed.passages) if st.packed else [])
        if st.evidence_sel is not None and st.evidence_sel.lead is not None:
            yield LeadReady(st.evidence_sel.lead, st.lead_s or 0.0)
        if st.packed is None:
            yield Delta(REFUSAL)
            yield Finished(self.parse(st, Generation()))
            return
        shown = False
        gen = self._generate(st)
        while True:
            try:
                delta = next(gen)
            except StopIteration as done:
                generation: Generation = done.value
                break
            shown = True
            yield delta
        answer = self.parse(st, generation)
        if answer.refused and not shown:
            yield Delta(REFUSAL)  # the held-back refusal (or nothing at all) was generated
        yield Finished(answer)
