"""rvq: robust residual finite scalar quantization of robot actions, speculative decoding, LIBERO evaluation."""

__version__ = "0.1.0"
