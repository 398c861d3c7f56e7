# faktoryd in a container: the supervisor is PID 1 (it handles TERM/INT and reaps orphaned processes itself, so no
# init shim is needed) and runs the handlers of the app in /etc/faktoryd/faktory.toml.
#
#   docker build -t faktoryd .
#   docker run --rm -e FAKTORY_URL=tcp://faktory:7419 --stop-timeout 30 faktoryd     # the example handlers
#
# Your app: mount it and its config (-v ./app:/app:ro -v ./faktory.toml:/etc/faktoryd/faktory.toml:ro), or build a
# derived image:
#
#   FROM faktoryd
#   COPY --chown=root:root . /app
#   RUN pip install --no-cache-dir -r /app/requirements.txt
#   COPY faktory.toml /etc/faktoryd/faktory.toml
#
# Stopping: `docker stop` sends SIGTERM and kills after 10 s. Running jobs get [worker] shutdown_timeout seconds
# (default 25) and the supervisor needs ~3 s more, so give it `docker stop -t 30` / `docker run --stop-timeout 30`
# (Kubernetes: terminationGracePeriodSeconds: 30, the default) or lower shutdown_timeout. See docs/deployment.md.

ARG PYTHON_VERSION=3.12

# ---- build: turn the source tree into a wheel (the build tools stay in this stage) ----
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY faktoryd ./faktoryd
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime: the wheel installed with pip, nothing else ----
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 faktoryd \
    && useradd --system --uid 10001 --gid faktoryd --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin faktoryd
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl \
    && faktoryd --version
# The examples, as the default app, so the image runs as is; replace them with yours.
COPY examples /opt/faktoryd/examples
COPY examples/container.toml /etc/faktoryd/faktory.toml
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER faktoryd
STOPSIGNAL SIGTERM
# Healthy when the supervisor is alive and every worker process has said HELLO to the server (it reads the status
# file the supervisor rewrites every 2 s). Use the same --config as the daemon.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["faktoryd", "status", "--config", "/etc/faktoryd/faktory.toml"]
ENTRYPOINT ["faktoryd"]
CMD ["--config", "/etc/faktoryd/faktory.toml"]
