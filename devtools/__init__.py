"""Development helpers: the demo datasets and tiny models that tests, the quickstart and the benchmarks use.

Kept out of ``ffc.runtime`` because generated run directories never import them.
"""
