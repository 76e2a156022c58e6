"""Pipeline stages as plain Python: one module per stage, run by DVC as `python -m tasks.<stage>`."""
