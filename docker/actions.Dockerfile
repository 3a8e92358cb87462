# CareLine action server (actions/), rasa-sdk on Python 3.11.
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
EXPOSE 5055
CMD ["python", "-m", "rasa_sdk", "--actions", "actions", "--port", "5055"]
