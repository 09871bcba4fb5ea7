"""The onceonly broker: catalog, policy, fan-out, attestation and trace ledger."""
