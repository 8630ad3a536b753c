"""Answers a student can trust: the handbook's own words that answer the question, whole and cited, then a short
explanation verified sentence by sentence (:mod:`rag.answer.pipeline` has the steps)."""

from rag.answer.pipeline import CONDENSE_MAX_TOKENS, Answer, AnswerPipeline, RefusalReason
from rag.answer.select import Quote

__all__ = ["CONDENSE_MAX_TOKENS", "Answer", "AnswerPipeline", "Quote", "RefusalReason"]
