# studybot: offline RAG study chatbot. Multi-stage: build wheels (llama-cpp-python compiles) -> slim runtime.
# Build:  docker build -t studybot .
# Run:    docker run -p 7860:7860 -v studybot-data:/data -e STUDYBOT_AUTH=user:password studybot
#         (the app binds 0.0.0.0 inside the container, so it refuses to start without STUDYBOT_AUTH unless
#         STUDYBOT_ALLOW_NO_AUTH=true says so on purpose)

FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY rag rag
COPY ui ui
COPY evals evals
COPY tools tools
# llama-cpp-python with the portable x86-64-v3 flags (AVX2/FMA/F16C, no -march=native, no AMX): the image runs
# on CPUs other than the one that built it (tools/llama_build.py; `python -m tools.llama_build args` prints them).
ENV STUDYBOT_LLAMA_CPU=portable
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install "torch==2.13.0" \
    && /opt/venv/bin/python -m tools.llama_build install --python /opt/venv/bin/python \
    && /opt/venv/bin/pip install .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 studybot \
    && mkdir -p /data && chown studybot:studybot /data
COPY --from=build /opt/venv /opt/venv
COPY --chown=studybot:studybot corpus /app/corpus
ENV PATH=/opt/venv/bin:$PATH \
    STUDYBOT_HOME=/data \
    STUDYBOT_CORPUS_DIR=/app/corpus \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False RAGAS_DO_NOT_TRACK=true
USER studybot
WORKDIR /app
VOLUME ["/data"]
EXPOSE 7860
# On every start: check the login (STUDYBOT_AUTH=user:password, or STUDYBOT_ALLOW_NO_AUTH=true; without either
# it exits with one line), assemble + verify the model, bring the index in the volume in line with the corpus
# and the uploads (uploads survive restarts), check the llama.cpp runtime once per build, then serve.
CMD ["studybot", "serve", "--prepare", "--host", "0.0.0.0", "--port", "7860"]
