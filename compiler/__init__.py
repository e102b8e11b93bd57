"""The ffc compiler: spec loading and validation, resolution, rendering, writing, and the ``ffc`` CLI."""
