# The platform's Python workers (topology, governor, agents) for docker-compose.kafka.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# confluent-kafka and fastavro ship manylinux wheels: no compiler needed.
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app quantum

USER quantum

ENTRYPOINT ["quantum"]
CMD ["--help"]
