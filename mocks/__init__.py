"""Test doubles built from the real formats: LIBERO-layout HDF5 files, mock checkpoints."""
