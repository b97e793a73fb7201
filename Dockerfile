# The Wyoming text-to-speech server (Home Assistant) on CPU:
#   docker build -t wyoming-kalle .
#   docker run -it -p 10200:10200 -v /path/to/voices:/voices wyoming-kalle --voices-dir /voices
# Arguments after the image name go to `wyoming-kalle` (see integrations/wyoming_kalle/README.md).
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
WORKDIR /usr/src/espnet-kalle

# CPU builds of the pinned torch pair first: PyPI's default wheels bring CUDA libraries (GBs) a CPU server never
# loads. `torch==X` in the constraints then accepts the installed X+cpu, so nothing is replaced below.
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        $(grep -E '^(torch|torchaudio)==' requirements/constraints.txt)

# The package with its embedded model and the [wyoming] extra, at the versions CI tests.
COPY setup.cfg pyproject.toml README.md ./
COPY espnet_kalle espnet_kalle
COPY integrations integrations
RUN pip install -c requirements/constraints.txt ".[wyoming]" \
    && useradd --create-home --uid 1000 kalle

USER kalle
EXPOSE 10200
# docker stop sends SIGTERM: the server cancels running syntheses and exits with status 0.
ENTRYPOINT ["wyoming-kalle", "--uri", "tcp://0.0.0.0:10200"]
