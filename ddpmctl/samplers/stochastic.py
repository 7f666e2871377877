"""Stochastic samplers beyond the ancestral family: EDM's stochastic sampler, Euler ancestral,
DPM-Solver++(2M) SDE and Restart sampling, with their registry records. See ``ddpmctl.samplers``
for the signature every sampler has."""

from __future__ import annotations
