"""The backends: one module per library the core runs on, each the only importer of its library.

* :mod:`rag.backends.llama_cpp`: the in-process LLM (llama-cpp-python, a GGUF file);
* :mod:`rag.backends.openai_server`: the LLM behind an OpenAI-compatible server (openai);
* :mod:`rag.backends.store`: the vector index and its manifest (chromadb);
* :mod:`rag.backends.keyword`: the persisted keyword index (bm25s);
* :mod:`rag.backends.embeddings`: the text embedder (sentence-transformers);
* :mod:`rag.backends.models`: the model files those load: the embedder's folder and the default GGUF,
  assembled from its packages and verified;
* :mod:`rag.backends.runtime_check`: the llama.cpp runtime check (a child process loads the GGUF first).

The LLM backends implement :class:`rag.llm.LLM` and are chosen through the registry in :mod:`rag.llm`. Nothing
here imports the answer, quiz or study code, or the retrieval that combines the two indexes (``rag.retrieval``).
"""
