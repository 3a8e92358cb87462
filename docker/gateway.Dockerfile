# CareLine gateway (channels/) and tools, on Python 3.11.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md requirements/venv.lock ./requirements/
RUN mv requirements/pyproject.toml requirements/README.md ./
COPY careline ./careline
COPY channels ./channels
COPY actions ./actions
COPY knowledge ./knowledge
RUN pip install --no-cache-dir -c requirements/venv.lock .
USER nobody
EXPOSE 8000
# WebSocket frames above MAX_WS_FRAME_BYTES are refused by uvicorn (close 1009) before they are parsed.
CMD ["sh", "-c", "exec uvicorn channels.app:create_app --factory --host 0.0.0.0 --port 8000 --no-access-log --log-level warning --ws-max-size \"${MAX_WS_FRAME_BYTES:-16384}\""]
