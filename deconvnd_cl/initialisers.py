"""Weight initialisation schemes (PuzzleLib's createTensorWithScheme)."""

from math import sqrt

import numpy as np

from .errors import ModuleError

SCHEMES = ("xavier_uniform", "xavier", "xavier_normal", "he", "gaussian", "uniform", "none")
FACTORS = ("in", "out", "avg")


def create_weights(shape, fanin, fanout, initscheme=None, wscale=1.0, rng=None):
    """float32 NumPy weights; initscheme is a name or (name, "in"|"out"|"avg"), None -> xavier_uniform, "in"."""
    rng = rng or np.random.default_rng()
    scheme, factor = (initscheme, "in") if initscheme is None or isinstance(initscheme, str) else initscheme
    scheme = scheme or "xavier_uniform"
    if scheme not in SCHEMES:
        raise ModuleError(f"initscheme {scheme!r} is unknown (expected one of {', '.join(SCHEMES)})")
    if factor not in FACTORS:
        raise ModuleError(f"initscheme factor {factor!r} is unknown (expected one of {', '.join(FACTORS)})")
    fan = {"in": fanin, "out": fanout, "avg": (fanin + fanout) / 2}[factor]
    if scheme == "xavier_uniform":
        limit = sqrt(3.0 / fan)
        values = rng.uniform(-limit, limit, shape)
    elif scheme in ("xavier", "xavier_normal"):
        values = rng.normal(0.0, sqrt(1.0 / fan), shape)
    elif scheme == "he":
        values = rng.normal(0.0, sqrt(2.0 / fan), shape)
    elif scheme == "gaussian":
        values = rng.normal(0.0, wscale, shape)
    elif scheme == "uniform":
        values = rng.uniform(-wscale, wscale, shape)
    else:  # "none": uninitialised, as PuzzleLib's empty tensor
        values = np.empty(shape)
    return values.astype(np.float32)
