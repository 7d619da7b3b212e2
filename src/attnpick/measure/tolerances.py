"""How far a backend may be from the reference and still pass parity, per dtype, as data (as xformers keeps
`ERROR_ATOL` beside its operators). Read by `verify()` and by the packing check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Largest error allowed, relative to the reference's largest magnitude of that quantity."""

    logits: float
    loss: float
    grads: float
    why: str


# Relative to max |reference|. float32: kernels differ only in summation order (~1e-7 per op); 1e-4 leaves
# room for a few layers. float16 has a 10-bit mantissa (unit roundoff 4.9e-4) and bfloat16 a 7-bit one
# (3.9e-3); the comparison is against float32, so the error includes casting the weights and activations
# of every layer, and gradients accumulate it over the backward pass: hence the looser gradient bounds.
TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(logits=1e-4, loss=1e-5, grads=1e-3,
                         why="same precision as the reference: only summation order differs"),
    "float16": Tolerance(logits=2e-2, loss=1e-2, grads=5e-2,
                         why="10-bit mantissa; weights and activations rounded in every layer"),
    "bfloat16": Tolerance(logits=6e-2, loss=3e-2, grads=1.5e-1,
                          why="7-bit mantissa; weights and activations rounded in every layer"),
}
