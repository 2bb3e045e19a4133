"""Evidence an auditor can check: the hash-chained audit log (and, later, attestation bundles).

    from writ.attestations.audit import AuditLog
    log = AuditLog(store)
    log.append("decision", decision.model_dump(mode="json"))
    report = log.verify()          # names the first bad entry
"""
