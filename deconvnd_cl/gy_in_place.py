"""Backward data reading gy where it lies (GySource.IN_PLACE on the CPU strategy, cpu_backward_data.mako): which
runs of gy a row tile reads, which of their lanes fall past a row's ends, and when a tile can do it.

Input position i reads gy at j = i*s + k*d - pad on every axis. Along the last axis the taps come in groups, each
group's reads for a tile's TN consecutive positions one contiguous run of gy:
- a last stride of 1: one tap a group, the run j = i + k*d - pad (a vector holds VW positions);
- a last stride of 2 without dilation: taps 2q and 2q + 1 together, the run interleaving them (a vector holds VW/2
  positions, each with its two taps in adjacent lanes; with an odd kernel size the last group has one tap, and its
  odd lanes are masked).
Group q's run starts `offset` elements after stride * (the tile's first position).

Lanes before a row's start (with pad > 0) or past its end fall only in the first vector of a row's first tile or
the last vector of its last tile, and take zero: the kernel loads the row's first (last) whole vector instead and
shifts it by a constant number of lanes (`borders`, part of the kernel key). Taps of the other axes that fall
outside gy skip whole rows of taps. So no packed copy of gy is made, and no packing pass runs.
"""

from math import ceil


def supported(geo):
    """A last-axis stride of 1, or of 2 without last-axis dilation."""
    return geo.stride[-1] == 1 or geo.stride[-1] == 2 and geo.dilation[-1] == 1


def group_offsets(geo):
    """Per tap group of the last axis, where its run of gy starts relative to stride * (first position)."""
    k, s, p, d = geo.size[-1], geo.stride[-1], geo.pad[-1], geo.dilation[-1]
    if s == 1:
        return tuple(q * d - p for q in range(k))
    return tuple(2 * q - p for q in range(ceil(k / 2)))


def borders(geo):
    """(lefts, rights): per tap group, the lanes of a row's first vector before gy's row start, and of its last
    vector past the row's end. A function of the layer alone: gy's row is stride * (input row) + tail long."""
    s = geo.stride[-1]
    tail = geo.dilation[-1] * (geo.size[-1] - 1) - 2 * geo.pad[-1] + 1 + geo.postpad[-1] - s
    offsets = group_offsets(geo)
    return tuple(max(0, -o) for o in offsets), tuple(max(0, o - tail) for o in offsets)


def tap_rows(geo):
    """Per row of taps (the taps of every axis but the last, row-major as W holds them), where it reads gy on
    those axes: k*d - pad per axis."""
    rows = [()]
    for k, d, p in zip(geo.size[:-1], geo.dilation[:-1], geo.pad[:-1]):
        rows = [r + (kk * d - p,) for r in rows for kk in range(k)]
    return rows


def constraints(geo, in_last, out_last, tn, vw):
    """(holds, description) pairs for a backward-data tile of TN positions in vectors of VW reading gy in place
    on rows of in_last inputs and out_last gradient elements."""
    rules = [(supported(geo), "a last-axis stride of 1, or of 2 without last-axis dilation, to read gy in place"),
             (in_last >= tn, f"input rows of at least tn = {tn} positions to read gy in place")]
    if not rules[0][0] or not rules[1][0] or (tn * geo.stride[-1]) % vw:
        return rules
    s = geo.stride[-1]
    offsets = group_offsets(geo)
    lefts, rights = borders(geo)
    if any(lefts) or any(rights):
        rules += [
            (max(lefts + rights) < vw, f"gy's border lanes within one vector of {vw} (a smaller last-axis pad, or "
                                       "gy read from packed planes)"),
            (out_last >= vw, f"gradient rows of at least vw = {vw} elements to read gy in place"),
            (tn * s >= 2 * vw, "at least two vectors a tap group (tn * last stride >= 2 * vw) where gy's borders "
                               "are read in place")]
    tiles = ceil(in_last / tn)
    if tiles > 1:  # the tiles between a row's first and last must read inside gy's row
        first_inner, last_inner_end = min(tn, in_last - tn), (tiles - 1) * tn
        rules.append((s * first_inner + min(offsets) >= 0 and s * last_inner_end + max(offsets) <= out_last,
                      f"input rows whose inner tiles of tn = {tn} read inside gy's rows (a longer row, or "
                      "another tn)"))
    return rules
