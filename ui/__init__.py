"""The web UI (``ffc ui``): a form over the spec, and buttons that call the compiler and the run scripts."""
