"""The staff console's identity layer: accounts, sessions, CSRF, login throttling, and the staff audit."""
