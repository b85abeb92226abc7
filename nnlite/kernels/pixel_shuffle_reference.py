"""Naive loop oracle of ``F.pixel_shuffle`` / ``F.pixel_unshuffle`` (the test oracle).

Element by element from the definition: out[n, c, h*r + i, w*r + j] = in[n, c*r*r + i*r + j, h, w]
over any number of leading dims (flattened to n here). No reshapes or transposes.
"""
import itertools

import numpy as np


def pixel_shuffle(x, r):
    lead, (cr, h, w) = x.shape[:-3], x.shape[-3:]
    c = cr // (r * r)
    planes = x.reshape((-1, cr, h, w))
    out = np.empty((planes.shape[0], c, h * r, w * r), dtype=x.dtype)
    for n, ch, y, xx, i, j in itertools.product(range(planes.shape[0]), range(c), range(h),
                                                range(w), range(r), range(r)):
        out[n, ch, y * r + i, xx * r + j] = planes[n, ch * r * r + i * r + j, y, xx]
    return out.reshape(lead + (c, h * r, w * r))


def pixel_unshuffle(x, r):
    lead, (c, hr, wr) = x.shape[:-3], x.shape[-3:]
    h, w = hr // r, wr // r
    planes = x.reshape((-1, c, hr, wr))
    out = np.empty((planes.shape[0], c * r * r, h, w), dtype=x.dtype)
    for n, ch, y, xx, i, j in itertools.product(range(planes.shape[0]), range(c), range(h),
                                                range(w), range(r), range(r)):
        out[n, ch * r * r + i * r + j, y, xx] = planes[n, ch, y * r + i, xx * r + j]
    return out.reshape(lead + (c * r * r, h, w))
