"""CareLine's Rasa SDK action server: one module per concern, logic in plain functions."""
