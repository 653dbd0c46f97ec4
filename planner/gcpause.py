"""Pausing the cyclic garbage collector around bulk work that makes no reference cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, then move every tracked object straight to
    the oldest generation and turn it back on.

    Loading, filtering and ranking a cache of 50,000 offers make hundreds of thousands of
    containers (offers, rows, ranking tuples) and no cycles: refcounting frees them all. With
    the collector on, each young collection walks them again as they age, and turning it back
    on after a plain pause makes the next young collection walk all of them at once (together
    about a third of `gpuplan recommend` on such a cache). gc.freeze then gc.unfreeze splices
    the generations' lists into the oldest one without walking them; objects made before the
    block are promoted too, which only delays when a cycle among them is found. Nested uses
    and a collector that was already off are left alone."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        gc.enable()
