# One image for every inferq role: the gateway by default; `inferq worker TARGET` for a worker,
# `inferq host` for the model host (docker-compose.yml builds it once and runs all of them).
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
    && useradd --system --no-log-init --create-home --uid 10001 --gid inferq inferq \
    && install -d -o 10001 -g 10001 /app/.inferq

# big_mlp's weights (43 MB, not committed, kept out of the build context by .dockerignore) are
# made here, into the installed package where `inferq worker big_mlp` looks for them: at run
# time that folder is not writable. -P: import the installed package, not /app's copy. The
# bytes are the same on every build (fixed seed), as `make models` makes them.
RUN python -P -m workers.models.make_big_mlp \
    && python -P -c "from workers.models.big_mlp import BigMLP; assert BigMLP.weights.is_file()"

# Nothing needs root at run time. A numeric id, so Kubernetes' runAsNonRoot can verify it.
# /app/.inferq (the default catalog, model store and model cache) is the user's.
USER 10001:10001

EXPOSE 8000 8001
CMD ["inferq", "gateway", "--host", "0.0.0.0", "--port", "8000"]
