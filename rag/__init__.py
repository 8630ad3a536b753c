"""studybot core: the shared nouns and text rules at this level, then backends/ (one module per library),
answer/, quiz/ and study/ by role (README, Architecture)."""
