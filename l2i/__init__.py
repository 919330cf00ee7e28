"""listen-to-interpret: pure-torch core (front-end, backbones, NMF, interpretation math, metrics).

Nothing in this package imports Lightning, so it can be used on its own.
"""

__version__ = "0.1.0"
