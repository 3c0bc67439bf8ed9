"""Unrolled networks on recon's operators (see docs/nets.md)."""
