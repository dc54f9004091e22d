"""The reference cloud (see bench/cloud/app.py and openapi.yaml)."""
