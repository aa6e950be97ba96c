"""Layer configurations for the tests: a seeded random sweep over every parameter, with readable ids."""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    batch: int
    cin: int
    cout: int
    spatial: tuple
    size: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    postpad: tuple
    groups: int

    @property
    def nd(self):
        return len(self.spatial)

    @property
    def out_spatial(self):
        return tuple((i - 1) * s + d * (k - 1) - 2 * p + 1 + pp for i, k, s, p, d, pp in
                     zip(self.spatial, self.size, self.stride, self.pad, self.dilation, self.postpad))

    @property
    def conv(self):
        return dict(stride=self.stride, pad=self.pad, dilation=self.dilation, groups=self.groups)

    @property
    def id(self):
        def axes(values):
            return "x".join(map(str, values))
        return (f"{self.nd}d-k{axes(self.size)}-s{axes(self.stride)}-p{axes(self.pad)}-d{axes(self.dilation)}"
                f"-pp{axes(self.postpad)}-g{self.groups}-c{self.cin}to{self.cout}-n{self.batch}-i{axes(self.spatial)}")


def random_config(rng, long_rows=False):
    """long_rows: the last axis 17-44 long and the others short, so the tiles of 16 positions (and the packing
    kernels' blocks of 16) lie both wholly inside a row and across its end; the plain sweep's rows are shorter."""
    nd = rng.choices([1, 2, 3, 4], weights=[3, 4, 2, 0 if long_rows else 1])[0]
    max_spatial = {1: 12, 2: 8, 3: 5, 4: 3}[nd]
    groups = rng.choice([1, 1, 2, 3, "C"])
    base_in = rng.choice([1, 2, 3, 4, 5, 7, 13, 17, 20])
    base_out = rng.choice([1, 2, 3, 5, 6, 7, 11, 17, 20])
    if groups == "C":  # depthwise-style: one input map per group
        groups = base_in
        cin, cout = base_in, base_in * rng.choice([1, 1, 2])
    else:
        cin, cout = base_in * groups, base_out * groups
    while True:
        size = tuple(rng.randint(1, 4) for _ in range(nd))
        stride = tuple(rng.randint(1, 4) for _ in range(nd))
        dilation = tuple(rng.randint(1, 3) for _ in range(nd))
        pad = tuple(rng.randint(0, d * (k - 1)) for k, d in zip(size, dilation))
        postpad = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
        spatial = tuple(rng.choice([1, rng.randint(1, max_spatial)]) for _ in range(nd))
        if long_rows:
            spatial = tuple(min(e, 3) for e in spatial[:-1]) + (rng.randint(17, 44),)
        config = Config(rng.randint(1, 3), cin, cout, spatial, size, stride, pad, dilation, postpad, groups)
        if all(o > 0 for o in config.out_spatial):
            return config


def direct_strides(rng, nd):
    """Strides of a kernel size = stride layer whose operands the CPU tiles read in place: a last stride of 1 or
    2, the others 1-3, one above 1 at least."""
    while True:
        stride = tuple(rng.randint(1, 3) for _ in range(nd - 1)) + (rng.choice((1, 2)),)
        if any(s > 1 for s in stride):
            return stride


def sweep(count, seed, long_rows=False):
    rng = random.Random(seed)
    return [random_config(rng, long_rows) for _ in range(count)]
