"""ota package."""
