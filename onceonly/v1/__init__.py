"""Generated from protos/onceonly/v1 by scripts/gen_protos.py. Do not edit."""
