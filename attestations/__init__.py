"""Evidence an auditor can check: the hash-chained audit log, its Merkle tree and signed checkpoints.

    from writ.attestations.audit import AuditLog, audit_log_for
    log = audit_log_for(settings, store)          # appends sign a checkpoint every N entries or S seconds
    log.append("decision", decision.model_dump(mode="json"))
    report = log.verify(checkpoints=held)         # names the first bad entry

Entry points: ``audit`` (the log), ``tree`` (roots and proofs from the database), ``merkle``
(RFC 6962 / 9162 hashing and proofs, pure), ``notes`` (C2SP signed notes and checkpoints, pure),
``checkpoints`` (making, storing and reading signed checkpoints), ``bundle`` (a plan's attestation
bundle from the stores), ``policy_bundles`` (each policy revision's OPA bundle, kept) and
``verify_bundle`` (checking one offline; ``replay`` re-evaluates its policy through a
``PolicyReplayer``, which ``writ.engine.policy.offline.verify_offline`` provides with regorus).
"""
