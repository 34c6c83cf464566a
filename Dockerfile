# One image for every inferq role: the gateway by default; `inferq worker TARGET` for a worker
# (docker-compose.yml runs both from it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The pinned dependencies first, in a layer of their own: a code change does not reinstall them.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Then the project itself; --no-deps, so the pins above are exactly what runs.
COPY . .
RUN pip install --no-deps . \
    && groupadd --system --gid 10001 inferq \
    && useradd --system --no-log-init --create-home --uid 10001 --gid inferq inferq

# Nothing needs root at run time. A numeric id, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8000 8001
CMD ["inferq", "gateway", "--host", "0.0.0.0", "--port", "8000"]
