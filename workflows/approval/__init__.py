"""The approval workflow: one Temporal workflow per plan drives its sign-off and waits for its end.

    client = await ApprovalClient.connect(settings)            # workflow_unavailable if Temporal is down
    await client.start(record)                                  # when a plan is stored
    count = await client.decide(plan_id, envelope_json)         # an Update: 'approve' or 'reject'
    count.summary                                               # '1/2; missing: code-owners'
    await client.plan_finished(plan_id, "completed")            # the gateway, when execution ends

The layout follows the temporalio samples: ``workflows.py`` (the workflow: deterministic, no IO),
``activities.py`` (the IO: the stores, the policy, the audit log, notifications),
``worker.py`` (a worker for one data directory), ``client.py`` (what the CLI, the gateway and
the web use), ``models.py`` (pydantic inputs and outputs, through
``temporalio.contrib.pydantic.pydantic_data_converter``), ``devserver.py`` (the embedded
Temporal dev server that ``writ serve`` runs when no cluster is configured).
"""

TASK_QUEUE = "writ-approval"
"""The default task queue (``WRIT_TEMPORAL_TASK_QUEUE``): one per Writ deployment (one database)."""

WORKFLOW_NAME = "WritPlanApproval"
