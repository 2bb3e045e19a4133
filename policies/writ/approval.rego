# Writ: what approval does a plan need, and do these approvals satisfy it?
#
# Entry points, always defined:
#   data.writ.approval.requirement
#     {"quorum", "required_groups", "max_ttl_seconds", "no_self_approval": true}
#   data.writ.approval.schedule
#     {"remind_after_hours", "escalate_after_hours", "escalate_to"}   (hours: a number or null)
#   data.writ.approval.result
#     {"satisfied", "rejected", "expired", "counted", "missing": {"approvals", "groups"},
#      "ignored": [{"index", "approver", "reason"}], "violations": [{"code", "message"}]}
# `ignored` is in approval order; `violations` is a set of objects (serialized sorted).
#
# Input (built by the workflow; signatures and keys already checked, see key_valid):
#   plan {id, planner, created_at, expires_at, steps [{server, tool, ...}]},
#   approvals [{approver, role, groups, decision, plan_id, at, key_valid}], now.
# Data: data.writ.approval_rules {"default": rule, "servers": {server: rule}} where a rule
#   has any of quorum, required_groups, max_ttl_seconds, remind_after_hours,
#   escalate_after_hours, escalate_to.
package writ.approval

import data.writ.lib

# Used when data.writ.approval_rules has no default rule.
fallback_rule := {"quorum": 2, "max_ttl_seconds": 86400, "required_groups": []}

# Order of precedence when an approval is ignored for several reasons at once.
# "duplicate_approver" comes after all of them: only eligible approvals can be duplicates.
ignore_precedence := ["self_approval", "not_an_approver", "wrong_plan", "key_invalid", "not_in_required_group"]

# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

# NOTE: never write `not f(ref)` or `not ref in coll` with a ref that may be undefined:
# OPA hoists the ref out of the negation (the rule becomes undefined), regorus does not
# (the negation holds). Positive helper rules keep both engines in agreement.
input_problems contains "the input must be a JSON object" if not input_is_object

input_is_object if is_object(input)

input_problems contains "plan must be an object with string id and planner" if {
	input_is_object
	not valid_plan_ids
}

input_problems contains "plan.created_at and plan.expires_at must be RFC 3339 timestamps" if {
	input_is_object
	not valid_plan_times
}

input_problems contains "plan.steps must be a list of objects with string server and tool" if {
	input_is_object
	not valid_steps
}

input_problems contains "approvals must be a list of objects with a string approver and a decision of approve or reject" if {
	input_is_object
	not valid_approvals
}

input_problems contains "now must be an RFC 3339 timestamp" if {
	input_is_object
	not now_ok
}

now_ok if is_number(now_ns)

# Parsed once per evaluation (the format check costs a regex match on regorus).
now_ns := lib.time_ns(input.now)

created_ns := lib.time_ns(input.plan.created_at)

expires_ns := lib.time_ns(input.plan.expires_at)

valid_plan_ids if {
	is_string(input.plan.id)
	lib.non_empty_string(input.plan.planner)
}

valid_plan_times if {
	is_number(created_ns)
	is_number(expires_ns)
}

valid_steps if {
	is_array(input.plan.steps)
	every s in input.plan.steps {
		lib.non_empty_string(s.server)
		lib.non_empty_string(s.tool)
	}
}

valid_approvals if {
	is_array(input.approvals)
	every a in input.approvals {
		lib.non_empty_string(a.approver)
		a.decision in {"approve", "reject"}
	}
}

default valid_input := false

valid_input if count(input_problems) == 0

# ---------------------------------------------------------------------------
# Requirement: the default rule combined with the rules of the servers the plan touches
# ---------------------------------------------------------------------------

default_rule := r if {
	r := data.writ.approval_rules["default"]
	is_object(r)
} else := fallback_rule

step_servers := {s.server |
	is_array(input.plan.steps)
	some s in input.plan.steps
	lib.non_empty_string(s.server)
}

applicable_rules := array.concat([default_rule], [r |
	some server in sort(step_servers)
	r := data.writ.approval_rules.servers[server]
	is_object(r)
])

# The strictest quorum, never below 1.
quorum := max({1} | {q |
	some r in applicable_rules
	is_number(r.quorum)
	q := ceil(r.quorum)
})

# Every group any applicable rule requires.
required_groups := sort({g |
	some r in applicable_rules
	is_array(r.required_groups)
	some g in r.required_groups
	is_string(g)
})

# The shortest lifetime any applicable rule allows.
max_ttl_seconds := min(ttls) if count(ttls) > 0 else := fallback_rule.max_ttl_seconds

ttls := {t |
	some r in applicable_rules
	is_number(r.max_ttl_seconds)
	t := r.max_ttl_seconds
}

requirement := {
	"quorum": quorum,
	"required_groups": required_groups,
	"max_ttl_seconds": max_ttl_seconds,
	"no_self_approval": true,
}

# ---------------------------------------------------------------------------
# Schedule: when the approval workflow reminds approvers and escalates
# ---------------------------------------------------------------------------

# The earliest reminder and escalation any applicable rule asks for (null: none), and every
# group any applicable rule escalates to. A rule: {"remind_after_hours": 4,
# "escalate_after_hours": 12, "escalate_to": ["sre-leads"]}.
schedule := {
	"remind_after_hours": earliest_hours("remind_after_hours"),
	"escalate_after_hours": earliest_hours("escalate_after_hours"),
	"escalate_to": escalate_to,
}

earliest_hours(field) := min(hours) if {
	hours := {h |
		some r in applicable_rules
		is_number(r[field])
		r[field] > 0
		h := r[field]
	}
	count(hours) > 0
} else := null

escalate_to := sort({g |
	some r in applicable_rules
	is_array(r.escalate_to)
	some g in r.escalate_to
	is_string(g)
})

# ---------------------------------------------------------------------------
# Approvals: which ones count
# ---------------------------------------------------------------------------

approval_list := input.approvals if {
	valid_input
} else := []

issue(a, "self_approval") if a.approver == input.plan.planner

issue(a, "not_an_approver") if object.get(a, "role", null) != "approver"

issue(a, "wrong_plan") if object.get(a, "plan_id", null) != input.plan.id

issue(a, "key_invalid") if object.get(a, "key_valid", false) != true

issue(a, "not_in_required_group") if {
	count(required_groups) > 0
	not in_required_group(a)
}

in_required_group(a) if {
	is_array(a.groups)
	some g in a.groups
	g in required_groups
}

# base_issues[i]: the reasons to ignore approval i other than being a duplicate, by precedence.
base_issues[i] := [c | some c in ignore_precedence; issue(a, c)] if some i, a in approval_list

# Indexes of approvals that would count if they were the approver's first.
eligible contains i if {
	some i, _ in approval_list
	count(base_issues[i]) == 0
}

# An eligible approval after an earlier eligible one from the same approver.
duplicates contains i if {
	some i in eligible
	some j in eligible
	j < i
	approval_list[j].approver == approval_list[i].approver
}

# Indexes of approvals that count (as approvals or as rejections).
valid contains i if {
	some i in eligible
	not i in duplicates
}

ignore_reason[i] := base_issues[i][0] if {
	some i, _ in approval_list
	count(base_issues[i]) > 0
}

ignore_reason[i] := "duplicate_approver" if some i in duplicates

ignored := [{"index": i, "approver": a.approver, "reason": ignore_reason[i]} | some i, a in approval_list; ignore_reason[i]]

counted := sort({a.approver |
	some i in valid
	a := approval_list[i]
	a.decision == "approve"
})

default rejected := false

rejected if {
	some i in valid
	approval_list[i].decision == "reject"
}

default expired := false

expired if {
	valid_input
	now_ns >= expires_ns
}

missing_approvals := max({0, quorum - count(counted)})

missing_groups := sort({g |
	some g in required_groups
	not group_covered(g)
})

group_covered(g) if {
	some i in valid
	a := approval_list[i]
	a.decision == "approve"
	is_array(a.groups)
	g in a.groups
}

# ---------------------------------------------------------------------------
# Violations: the plan itself breaks the rules, whatever the approvals
# ---------------------------------------------------------------------------

violations contains reason("input_incomplete", concat("", ["the approval request is incomplete or malformed (", concat("; ", sort(input_problems)), "): it cannot be satisfied, report it to the Writ operator"])) if {
	not valid_input
}

violations contains reason("plan_ttl_too_long", concat("", ["the plan stays valid for longer than the allowed ", format_int(max_ttl_seconds, 10), " seconds: propose it again with an earlier expires_at"])) if {
	valid_input
	expires_ns - created_ns > max_ttl_seconds * 1000000000
}

violations contains reason("plan_empty", "the plan has no steps, so there is nothing to approve: propose a plan with at least one step") if {
	valid_input
	count(input.plan.steps) == 0
}

# ---------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------

default satisfied := false

satisfied if {
	valid_input
	not rejected
	not expired
	count(counted) >= quorum
	count(missing_groups) == 0
	count(violations) == 0
}

result := {
	"satisfied": satisfied,
	"rejected": rejected,
	"expired": expired,
	"counted": counted,
	"missing": {"approvals": missing_approvals, "groups": missing_groups},
	"ignored": ignored,
	"violations": violations,
}

reason(code, message) := {"code": code, "message": message}

# ---------------------------------------------------------------------------
# A failed step (ADR 0009): data.writ.approval.retry_failed_step
# ---------------------------------------------------------------------------

# May the executor claim step input.step_index of input.plan again, after it failed
# upstream (input.attempt: how many times it was claimed)? Default no: a failed step
# fails its plan. data.writ.config.retry_failed_steps = true allows a retry, up to
# data.writ.config.max_step_attempts claims of one step (default 3).
default retry_failed_step := false

retry_failed_step if {
	data.writ.config.retry_failed_steps == true
	is_number(input.attempt)
	input.attempt < max_step_attempts
}

default max_step_attempts := 3

max_step_attempts := n if {
	n := data.writ.config.max_step_attempts
	is_number(n)
}
