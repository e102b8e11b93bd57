"""The file templates (Jinja) from which ``ffc build`` renders a run directory, and the ruff style it formats them with."""
