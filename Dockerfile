# kbengine serve on CPU. Build: docker build -t kbengine .   Run: see docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY kbengine kbengine
COPY ingest ingest
COPY retrieval retrieval
COPY reasoning reasoning
RUN pip install --no-cache-dir .
ENV KBENGINE_KB=/data/kb
EXPOSE 8000
CMD ["kbengine", "serve", "--host", "0.0.0.0", "--port", "8000"]
