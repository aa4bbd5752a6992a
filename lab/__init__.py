"""Development only: the edge benchmarks, profiles and selection scripts. May import the edge and the trainer.

Not part of the edge wheel or the container; run it from a source checkout with ``edgewatch-lab``.
"""
