"""Hand-written test doubles for the seams studybot owns (no mocking libraries), passed in through
constructors like the real parts: ``StudyService(settings, embedder=HashEmbedder(), llm=ScriptedLLM([...]))``.

Import them as ``from tests.fakes import ...`` (the one import path for test helpers)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rag import prompts
from rag.llm import LLM, Piece, Request, Response
from rag.quiz.glossary import SCHEMA as GLOSSARY_SCHEMA
from rag.retrieval import HybridRetriever
from rag.terms import Vocabulary
from rag.types import Chunk, Passage


class HashEmbedder:
    """A deterministic, model-free :class:`rag.backends.embeddings.TextEmbedder`: each word (lower-cased, a-z0-9) is
    hashed to a few of ``dim`` dimensions and the sum is normalised, so texts that share words are close and
    texts that share none are orthogonal. Milliseconds instead of a sentence-transformers model, for tests of
    logic that do not depend on what the real embedder knows."""

    name = "hash-embedder"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.calls = 0

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            for j in range(0, 6, 2):
                vec[int.from_bytes(digest[j:j + 2], "little") % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in vec)) or 1.0
        return [x / norm for x in vec]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


TEXTS = [
    "L1 regularization adds the absolute values of the weights to the loss and drives some weights to zero.",
    "L2 regularization adds the squared weights to the loss and shrinks all weights smoothly toward zero.",
    "Dropout randomly disables units during training so the network cannot rely on any single unit.",
]


class FakeRetriever:
    """A :class:`rag.retrieval.Retriever` that returns the same passages (``texts``, as chunks c0, c1, ...) for
    every question, with a chosen dense similarity, and records the queries."""

    def __init__(self, similarity: float = 0.6, texts: list[str] = TEXTS, elsewhere: tuple[str, ...] = ()) -> None:
        self.similarity = similarity
        self.texts = texts
        self.elsewhere = list(elsewhere)  # indexed text that retrieval never returns
        self.queries: list[str] = []

    def check_question(self, question: str) -> str:
        return HybridRetriever.check_question(self, question)  # type: ignore[arg-type]

    max_query_chars = 2000

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(self.texts + self.elsewhere)

    def idf(self, token: str) -> float:
        return 1.0

    def refresh(self, force: bool = False) -> None:
        pass

    @property
    def chunks(self) -> dict[str, Chunk]:
        return {p.chunk.id: p.chunk for p in self.retrieve("", len(self.texts))}

    def retrieve(self, question: str, k: int, mode: str = "hybrid") -> list[Passage]:
        self.queries.append(question)
        return [
            Passage(
                chunk=Chunk(id=f"c{i}", text=t, source=f"doc{i}.md", title=f"Doc {i}", section=f"Sec {i}",
                            page=i + 1 if i == 2 else None, start=0, end=len(t), content_hash=f"h{i}", ordinal=i * 5),
                score=1.0 / (i + 1),
                dense_rank=i + 1,
                bm25_rank=i + 1,
                extra={"similarity": self.similarity - 0.05 * i},
            )
            for i, t in enumerate(self.texts[:k])
        ]


class ScriptedLLM(LLM):
    """A fake :class:`rag.llm.LLM` that plays back queued replies.

    Each ``stream()``/``complete()`` call pops the next reply (``stream`` yields it in pieces of
    ``piece_size`` characters, each counted as a token, through the shared loop of :class:`rag.llm.Response`), records what it received in :attr:`calls` (``calls[i]["messages"]`` and the
    keyword arguments), and raises ``AssertionError`` when no reply is left - a test that triggers more LLM
    calls than it scripted fails loudly.

    A reply may also be an exception instance: it is raised instead of replying (to script backend errors).

    ``judge(messages) -> log-odds`` answers :meth:`yes_no` (recorded in :attr:`judged`); without one a yes/no
    question pops a scripted reply like any call (the base class reads "yes"/"no" from it).
    """

    name = "scripted"
    supports_suppress = True  # records ``suppress`` in calls[i]; a scripted reply is played back regardless

    def __init__(
        self, replies: list[str | BaseException] | None = None, *, n_ctx: int = 4096, piece_size: int = 4,
        judge: Callable[[list[dict[str, str]]], float] | None = None,
        tokens: Callable[[list[dict[str, str]], str], list[float]] | None = None,
    ) -> None:
        self.replies: list[str | BaseException] = list(replies or [])
        self.tokens = tokens
        self.token_reads: list[tuple[list[dict[str, str]], str]] = []
        self.n_ctx = n_ctx
        self.piece_size = piece_size
        self.calls: list[dict[str, Any]] = []
        self.judge = judge
        self.judged: list[list[dict[str, str]]] = []
        self.kept: list[list[dict[str, str]]] = []

    def yes_no(self, messages: list[dict[str, str]], shared: str = "") -> float:
        if self.judge is None:
            return super().yes_no(messages, shared)
        self.judged.append([dict(m) for m in messages])
        return self.judge(messages)

    def token_logprobs(self, messages: list[dict[str, str]], text: str, shared: str = "") -> list[float]:
        """llama.cpp's backend extra, scripted: ``tokens(messages, text)`` when given, else 0.0 a word."""
        self.token_reads.append(([dict(m) for m in messages], text))
        return self.tokens(messages, text) if self.tokens is not None else [0.0] * len(text.split())

    def keep_prefix(self, messages: list[dict[str, str]]) -> int:
        self.kept.append([dict(m) for m in messages])
        return sum(self.count_tokens(m["content"]) for m in messages)

    def queue(self, *replies: str | BaseException) -> None:
        self.replies.extend(replies)

    @property
    def messages(self) -> list[list[dict[str, str]]]:
        """The messages of every call so far."""
        return [call["messages"] for call in self.calls]

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def _pop(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
        if not self.replies:
            raise AssertionError(
                f"ScriptedLLM got call #{len(self.calls)} but has no reply queued; last user message: "
                f"{next((m['content'] for m in reversed(messages) if m.get('role') == 'user'), '')[:200]!r}"
            )
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def generate(self, messages: list[dict[str, str]], request: Request) -> Response:
        start = time.perf_counter()
        extra = {"suppress": list(request.suppress)} if request.suppress else {}
        reply = self._pop(messages, max_tokens=request.max_tokens, temperature=request.temperature,
                          stop=list(request.stop) or None, json_schema=request.json_schema, **extra)
        return Response(self._pieces(reply), start=start,
                        prompt_tokens=sum(self.count_tokens(m.get("content", "")) for m in messages))

    def _pieces(self, reply: str) -> Iterator[Piece]:
        for i in range(0, len(reply), self.piece_size):
            yield Piece(reply[i : i + self.piece_size])
        yield Piece(finish_reason="stop")


def reader(answering: Sequence[str] = (), *, yes: float = 3.0, no: float = -3.0
           ) -> Callable[[list[dict[str, str]]], float]:
    """A :meth:`LLM.yes_no` judge that reads like a careful student: a judged unit, or a set of quotes, answers
    when it holds one of the ``answering`` strings (case-insensitive); a checked sentence is stated when each
    of its words of four or more letters is in the excerpts."""

    def holds(text: str) -> float:
        return yes if any(a.lower() in text.lower() for a in answering) else no

    def judge(messages: list[dict[str, str]]) -> float:
        content = messages[-1]["content"]
        if content.startswith("Question:") and "\n\nSentence:" in content:  # rag/prompts/judge.txt
            return holds(content.split("\n\nSentence:", 1)[1].rsplit("\n\nDoes this sentence", 1)[0])
        if content.rstrip().endswith("Do the excerpts answer this question?"):  # rag/prompts/answers.txt
            return holds(content.split("</excerpts>", 1)[0])
        if content.startswith("Passage:") and "\n\nStatement:" in content:  # evals.judge_accuracy.NLI_PROMPT
            excerpts, claim = content.split("\n\nStatement:", 1)
        else:
            excerpts, claim = content.split("Check. Sentence:", 1)  # rag/prompts/check.txt
        claim = re.sub(r"\[\d+\]", " ", claim.split("\n\n", 1)[0])
        have = _words(excerpts)
        return yes if all(w in have for w in _words(claim) if len(w) >= 4) else no

    return judge


# --- quiz replies written from the passage the quiz chose ------------------------------------------------
Reply = str | BaseException | Callable[[list[dict[str, str]]], str]


class PassageLLM(ScriptedLLM):
    """ScriptedLLM whose replies may be functions of the messages (to write items from the passage the
    quiz chose, which the test does not know in advance).

    Two kinds of call are answered by a rule instead of a scripted reply:

    * the MCQ term matches (``rag/prompts/quiz_match*.txt``: "which term does this describe?"), recorded in
      :attr:`matches`: ``match(definition, terms, lines)``, by default :func:`match_from_lines` over the
      lines of ``texts`` (the corpus the quiz draws on);
    * the glossary prompts (``rag/prompts/quiz_terms.txt``), recorded in :attr:`calls` like any call:
      ``glossary(messages)``, by default :func:`glossary_of` (terms and definitions cut from the passage's
      own sentences)."""

    def __init__(self, *args: Any, glossary: Callable[[list[dict[str, str]]], str] | None = None,
                 match: Callable[[str, list[tuple[str, str]], Sequence[str]], str] | None = None,
                 texts: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matches: list[tuple[str, str]] = []  # (definition, term picked)
        self.glossary = glossary or glossary_of
        self.match = match or match_from_lines
        self.lines: list[str] = []
        self.read(texts)

    def read(self, texts: Sequence[str]) -> None:
        """Texts the term matches draw on (what this fake student has read)."""
        self.lines += [ln for t in texts for ln in re.split(r"(?<=[.!?])\s+|\n+", t) if ln.strip()]

    def _pop(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        if kwargs.get("json_schema") == GLOSSARY_SCHEMA:
            self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
            return self.glossary(messages)
        if messages and messages[0]["content"] == prompts.load("quiz_match_system"):
            content = messages[-1]["content"]
            terms = re.findall(r"^([ABCD])\) (.*)$", content, re.M)
            definition = re.search(r"^Description: (.*)$", content, re.M).group(1)  # type: ignore[union-attr]
            letter = self.match(definition, terms, self.lines)
            self.matches.append((definition, dict(terms).get(letter, "")))
            return json.dumps(letter)
        reply: Any = super()._pop(messages, **kwargs)
        return reply(messages) if callable(reply) else reply


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def match_from_lines(definition: str, terms: list[tuple[str, str]], lines: Sequence[str]) -> str:
    """What a student who read the handbooks picks: of the lines that name one of the terms, the one with the
    most of the description's words decides; "D" when no line names a term."""
    words = _words(definition)
    scored = [(len(words & _words(ln)), k) for ln in lines for k, t in terms if t.lower() in ln.lower()]
    return max(scored, default=(0, "D"))[1]


_PASSAGE = re.compile(r'<passage from="(.*?)">\n(.*?)\n</passage>', re.S)


def passage_of(messages: list[dict[str, str]]) -> tuple[str, str]:
    m = _PASSAGE.search(messages[-1]["content"])
    assert m, "the prompt has no passage"
    return m.group(1), m.group(2)


def _whole(words: list[str]) -> str:
    """The first 14 words, ending on a content word (an answer that stops on "of" reads as cut off)."""
    from rag.quiz.validation import cut_off

    words = words[:14]
    while len(words) > 3 and cut_off(" ".join(words), 1000):
        words = words[:-1]
    return " ".join(words)


def fact_of(messages: list[dict[str, str]]) -> str:
    """A sentence of the passage with at least 6 words (the 'answer' a good item would use)."""
    _, text = passage_of(messages)
    for sent in re.split(r"(?<=[.!?])\s+|\n+", text):
        words = re.sub(r"[*#|`>_]", " ", sent).split()
        if len(words) >= 6:
            return _whole(words)
    return _whole(text.split())


def good(qtype: str = "short", question: str | None = None) -> Callable[[list[dict[str, str]]], str]:
    """A short-answer or flashcard reply written from a fact of the passage."""
    def reply(messages: list[dict[str, str]]) -> str:
        fact = fact_of(messages)
        q = question or f"Which statement about {fact.split()[0]} {' '.join(fact.split()[1:5])} is right?"
        data: dict[str, Any] = {"question": q, "answer": fact, "explanation": f"The handbook says: {fact}."}
        if qtype == "flashcard":
            data.pop("explanation")
        return json.dumps(data)

    return reply


_COMMON = {"learning", "training", "machine", "features", "between", "another", "example", "without", "through",
           "because", "different", "important", "including", "problems", "problem", "performance", "methods"}


def glossary_of(messages: list[dict[str, str]]) -> str:
    """A glossary reply from the passage: for up to three of its sentences of 7+ words, the longest
    uncommon word as the term and the sentence's other words (at most 12, ending on a content word) as
    its definition: terms the passage names, definitions it states."""
    _, text = passage_of(messages)
    terms: list[dict[str, str]] = []
    for sent in re.split(r"(?<=[.!?])\s+|\n+", text):
        words = re.sub(r"[*#|`>_()\[\]:;,\"]", " ", sent).split()
        if len(words) < 7:
            continue
        plain = [w for w in words if w.isalpha() and w.lower() not in _COMMON]
        term = max(plain, key=len, default="")
        if len(term) < 7 or any(t["term"].lower() == term.lower() for t in terms):
            continue
        definition = _whole([w for w in words if w.lower() != term.lower()][:12])
        if len(definition.split()) >= 3:
            terms.append({"term": term, "definition": definition})
        if len(terms) == 3:
            break
    return json.dumps({"terms": terms or [{"term": "nothing", "definition": "no sentence to define"}]})
