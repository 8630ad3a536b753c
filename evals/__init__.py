"""studybot evals: the gold set, retrieval metrics and the Ragas suite."""
