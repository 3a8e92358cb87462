"""The gateway: every channel (web chat, API, SMS, agent console) enters here."""
