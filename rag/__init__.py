"""studybot core: settings, models, retrieval, prompts, LLM, citations, answers and quizzes."""
