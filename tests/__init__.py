"""The ffc test suite (run it with ``bash scripts/test.sh``)."""
