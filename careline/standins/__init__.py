"""Local stand-ins for the systems CareLine cannot reach from a developer's machine, each speaking
that system's real protocol: Twilio's Messages API and webhooks (`twilio_api`, with the sandbox's
phone page) and OpenAI's Chat Completions (`openai_chat`). Development and test tools only: the
gateway never imports them."""
