# One image for every robustlab service (see docker-compose.yml): the entrypoint is the
# `robustlab` command, and each service passes its subcommand (`worker`, `beat`, ...).
#
#   docker build --build-arg GIT_SHA=$(git rev-parse HEAD) -t robustlab .
#
# PyPI's torch wheels for Linux bundle the CUDA libraries, so the same image runs on the CPU and,
# given a GPU through the NVIDIA container toolkit, on CUDA (the host provides only the driver).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# Dependencies first, pinned by the lock file: this layer is rebuilt only when they change.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, editable: the migrations and specs are found beside the code in /app.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 1000 robustlab \
    && mkdir -p /srv/robustlab/artifacts /srv/robustlab/runs /srv/robustlab/data \
    && chown -R robustlab:robustlab /srv/robustlab

# The image has no .git: provenance takes the commit from the build.
ARG GIT_SHA=unknown
ENV ROBUSTLAB_GIT_SHA=${GIT_SHA} \
    ROBUSTLAB_ARTIFACT_DIR=/srv/robustlab/artifacts \
    ROBUSTLAB_RUNS_DIR=/srv/robustlab/runs \
    ROBUSTLAB_DATA_DIR=/srv/robustlab/data

USER robustlab
ENTRYPOINT ["robustlab"]
CMD ["--help"]
