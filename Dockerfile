# studybot: offline RAG study chatbot. Multi-stage: build wheels (llama-cpp-python compiles) -> slim runtime.
# Build:  docker build -t studybot .
# Run:    docker run -p 7860:7860 -v studybot-data:/data studybot
#         (the app binds 0.0.0.0 inside the container and therefore requires --auth, or --no-auth on purpose)

FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY rag rag
COPY ui ui
COPY evals evals
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install "torch==2.13.0" \
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
# Assemble + verify the default model and ingest the corpus into the volume on first start, then serve.
# Set STUDYBOT_AUTH=user:password to require a login (recommended whenever the port is reachable by others).
CMD ["sh", "-c", "studybot doctor --fix >/dev/null; studybot ingest || true; if [ -n \"$STUDYBOT_AUTH\" ]; then exec studybot serve --host 0.0.0.0 --port 7860 --auth \"$STUDYBOT_AUTH\"; else exec studybot serve --host 0.0.0.0 --port 7860 --no-auth; fi"]
