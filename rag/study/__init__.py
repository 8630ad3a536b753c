"""The study loop's state: quiz items, reviews, FSRS cards and saved conversations per user."""
