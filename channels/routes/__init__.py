"""The gateway's routers, one per surface: health, web chat, the JSON API, SMS (Twilio).

Each module has a `router` whose handlers take their services from channels/deps.py; what the API
and the web chat share at the edge (rate limits, error bodies) is in edge.py. A new surface is a
module here and one `include_router` line in channels/app.py."""
