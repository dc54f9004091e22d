"""Installer mode: a local, token-unlocked web view of what the sensor sees (de-identified), a zone and line
editor on it, calibration from point pairs and the count audit against an installer's hand counts."""
