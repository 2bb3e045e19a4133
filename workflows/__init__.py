"""Writ's durable workflows, on Temporal: the layer between the wired stores and the gateway.

``writ.workflows.approval``: one approval workflow per plan (quorum, expiry, reminders,
escalation, notifications, the end of execution). See docs/adr/0014-approval-workflow.md.
"""
