# The official Rasa 3.6.21 image with CareLine's bot trained in.
FROM rasa/rasa:3.6.21-full
WORKDIR /app
COPY --chown=1001 bot ./bot
RUN rasa train -c bot/config.yml -d bot/domain --data bot/data --out models --fixed-model-name careline
CMD ["run", "--enable-api", "--credentials", "bot/credentials.yml", "--endpoints", "bot/endpoints.yml", "--port", "5005"]
