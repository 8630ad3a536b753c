"""studybot ingest: load MD/TXT/PDF, chunk along document structure, embed, upsert into Chroma."""
