"""Signed plans: the exact tool calls a planner proposes, signed with Ed25519 in DSSE envelopes."""
