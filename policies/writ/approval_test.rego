# Unit tests for writ.approval. Run by `writ policy test` on regorus and on OPA.
package writ.approval_test

import data.writ.approval

# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------

plan_id := "sha256:9b74c9897bac770ffc029102a200c5de0d9c1b6e3a2f8e4d7c6b5a4f3e2d1c0b"

now := "2026-11-22T09:00:00Z"

plan := {
	"id": plan_id,
	"planner": "plan-bot",
	"created_at": "2026-11-22T08:00:00Z",
	"expires_at": "2026-11-22T20:00:00Z",
	"steps": [{"server": "git", "tool": "git_commit"}],
}

# A valid approval by `who` (alice and bob are code owners, carol is in security).
approve(who) := {
	"approver": who,
	"role": "approver",
	"groups": groups_of(who),
	"decision": "approve",
	"plan_id": plan_id,
	"at": "2026-11-22T08:30:00Z",
	"key_valid": true,
}

reject(who) := object.union(approve(who), {"decision": "reject"})

groups_of("alice") := ["code-owners"]

groups_of("bob") := ["code-owners"]

groups_of("carol") := ["security"]

groups_of("dave") := []

groups_of("erin") := []

groups_of("plan-bot") := []

request(approvals) := {"plan": plan, "approvals": approvals, "now": now}

request_for(steps, approvals) := {"plan": object.union(plan, {"steps": steps}), "approvals": approvals, "now": now}

result_of(i) := r if {
	r := approval.result with input as i
}

requirement_of(i) := r if {
	r := approval.requirement with input as i
}

violation_codes(r) := {v.code | some v in r.violations}

ignored_as(r, index, reason) if {
	some entry in r.ignored
	entry.index == index
	entry.reason == reason
}

other_step := [{"server": "other", "tool": "run"}]

# ---------------------------------------------------------------------------
# Requirement
# ---------------------------------------------------------------------------

test_requirement_for_git_plan if {
	requirement_of(request([])) == {"quorum": 2, "required_groups": ["code-owners"], "max_ttl_seconds": 86400, "no_self_approval": true}
}

test_requirement_default_for_unlisted_server if {
	requirement_of(request_for(other_step, [])) == {"quorum": 2, "required_groups": [], "max_ttl_seconds": 86400, "no_self_approval": true}
}

test_quorum_from_server_rule if {
	r := {"default": {"quorum": 1, "max_ttl_seconds": 3600, "required_groups": []}, "servers": {"git": {"quorum": 3}, "fs": {"quorum": 2}}}
	requirement_of(request([])).quorum == 3 with data.writ.approval_rules as r
	requirement_of(request_for([{"server": "fs", "tool": "write_file"}], [])).quorum == 2 with data.writ.approval_rules as r
	requirement_of(request_for(other_step, [])).quorum == 1 with data.writ.approval_rules as r
}

test_quorum_is_max_over_default_and_steps if {
	r := {"default": {"quorum": 4}, "servers": {"git": {"quorum": 2}, "fs": {"quorum": 3}}}
	steps := [{"server": "git", "tool": "git_add"}, {"server": "fs", "tool": "edit_file"}]
	requirement_of(request_for(steps, [])).quorum == 4 with data.writ.approval_rules as r
	requirement_of(request_for(steps, [])).quorum == 3 with data.writ.approval_rules as object.union(r, {"default": {"quorum": 1}})
}

test_quorum_never_below_one if {
	requirement_of(request([])).quorum == 1 with data.writ.approval_rules as {"default": {"quorum": 0}, "servers": {"git": {"quorum": -2}}}
	requirement_of(request([])).quorum == 1 with data.writ.approval_rules as {"default": {"quorum": "many"}}
}

test_fractional_quorum_rounds_up if {
	requirement_of(request([])).quorum == 2 with data.writ.approval_rules as {"default": {"quorum": 1.5}}
}

test_required_groups_union_sorted if {
	r := {"default": {"quorum": 2, "required_groups": ["security"]}, "servers": {"git": {"required_groups": ["code-owners"]}, "fs": {"required_groups": ["security", "release"]}}}
	steps := [{"server": "fs", "tool": "write_file"}, {"server": "git", "tool": "git_commit"}, {"server": "fs", "tool": "move_file"}]
	requirement_of(request_for(steps, [])).required_groups == ["code-owners", "release", "security"] with data.writ.approval_rules as r
}

test_rules_of_servers_not_in_plan_ignored if {
	r := {"default": {"quorum": 1}, "servers": {"fs": {"quorum": 5, "required_groups": ["security"], "max_ttl_seconds": 60}}}
	requirement_of(request([])) == {"quorum": 1, "required_groups": [], "max_ttl_seconds": 86400, "no_self_approval": true} with data.writ.approval_rules as r
}

test_max_ttl_is_strictest if {
	r := {"default": {"quorum": 2, "max_ttl_seconds": 86400}, "servers": {"git": {"max_ttl_seconds": 3600}}}
	requirement_of(request([])).max_ttl_seconds == 3600 with data.writ.approval_rules as r
	requirement_of(request_for(other_step, [])).max_ttl_seconds == 86400 with data.writ.approval_rules as r
}

test_missing_rules_fall_back_to_builtin_default if {
	requirement_of(request([])) == {"quorum": 2, "required_groups": [], "max_ttl_seconds": 86400, "no_self_approval": true} with data.writ.approval_rules as {}
	requirement_of(request([])).max_ttl_seconds == 86400 with data.writ.approval_rules as {"default": {"quorum": 1}}
}

test_malformed_rules_ignored if {
	r := {"default": {"quorum": 1, "required_groups": [7, "code-owners"], "max_ttl_seconds": "1 day"}, "servers": {"git": 3, "fs": {"required_groups": "security"}}}
	steps := [{"server": "git", "tool": "git_add"}, {"server": "fs", "tool": "edit_file"}]
	requirement_of(request_for(steps, [])) == {"quorum": 1, "required_groups": ["code-owners"], "max_ttl_seconds": 86400, "no_self_approval": true} with data.writ.approval_rules as r
	requirement_of(request([])) == {"quorum": 2, "required_groups": [], "max_ttl_seconds": 86400, "no_self_approval": true} with data.writ.approval_rules as {"default": "strict"}
}

test_requirement_defined_for_garbage_input if {
	requirement_of({}) == {"quorum": 2, "required_groups": [], "max_ttl_seconds": 86400, "no_self_approval": true}
	requirement_of("plan").quorum == 2
}

# ---------------------------------------------------------------------------
# Counting approvals
# ---------------------------------------------------------------------------

test_two_code_owner_approvals_satisfy if {
	result_of(request([approve("alice"), approve("bob")])) == {
		"satisfied": true,
		"rejected": false,
		"expired": false,
		"counted": ["alice", "bob"],
		"missing": {"approvals": 0, "groups": []},
		"ignored": [],
		"violations": set(),
	}
}

test_counted_sorted_and_extra_approvals_fine if {
	r := result_of(request_for(other_step, [approve("dave"), approve("carol"), approve("alice")]))
	r.counted == ["alice", "carol", "dave"]
	r.satisfied == true
	r.missing.approvals == 0
}

test_single_approval_not_enough if {
	r := result_of(request([approve("alice")]))
	r.satisfied == false
	r.counted == ["alice"]
	r.missing == {"approvals": 1, "groups": []}
}

test_no_approvals_yet if {
	r := result_of(request([]))
	r.satisfied == false
	r.rejected == false
	r.missing == {"approvals": 2, "groups": ["code-owners"]}
}

test_approval_by_author_ignored if {
	r := result_of(request([approve("plan-bot"), approve("alice")]))
	r.ignored == [{"index": 0, "approver": "plan-bot", "reason": "self_approval"}]
	r.counted == ["alice"]
	r.satisfied == false
}

test_self_approval_ignored_even_in_required_group if {
	i := {"plan": object.union(plan, {"planner": "alice"}), "approvals": [approve("alice"), approve("bob")], "now": now}
	r := result_of(i)
	ignored_as(r, 0, "self_approval")
	r.counted == ["bob"]
}

test_non_approver_role_ignored if {
	every role in ["planner", "executor", "auditor", "admin"] {
		r := result_of(request([object.union(approve("alice"), {"role": role}), approve("bob")]))
		r.ignored == [{"index": 0, "approver": "alice", "reason": "not_an_approver"}]
		r.counted == ["bob"]
	}
	ignored_as(result_of(request([object.remove(approve("alice"), ["role"])])), 0, "not_an_approver")
}

test_approval_of_other_plan_ignored if {
	r := result_of(request([approve("alice"), object.union(approve("bob"), {"plan_id": "sha256:0000"})]))
	r.ignored == [{"index": 1, "approver": "bob", "reason": "wrong_plan"}]
	r.counted == ["alice"]
	r.satisfied == false
}

test_invalid_key_ignored if {
	every kv in [false, null, "true", 1] {
		r := result_of(request([approve("alice"), object.union(approve("bob"), {"key_valid": kv})]))
		r.ignored == [{"index": 1, "approver": "bob", "reason": "key_invalid"}]
		r.counted == ["alice"]
	}
	ignored_as(result_of(request([object.remove(approve("alice"), ["key_valid"])])), 0, "key_invalid")
}

test_approver_outside_required_groups_ignored if {
	r := result_of(request([approve("alice"), approve("carol"), approve("dave")]))
	r.ignored == [{"index": 1, "approver": "carol", "reason": "not_in_required_group"}, {"index": 2, "approver": "dave", "reason": "not_in_required_group"}]
	r.counted == ["alice"]
	r.satisfied == false
}

test_required_group_taken_from_approval_groups if {
	# dave's approval says he is a code owner: that field decides, not data.writ.groups.
	r := result_of(request([approve("alice"), object.union(approve("dave"), {"groups": ["code-owners"]})]))
	r.counted == ["alice", "dave"]
	r.satisfied == true
	ignored_as(result_of(request([object.union(approve("alice"), {"groups": "code-owners"})])), 0, "not_in_required_group")
	ignored_as(result_of(request([object.remove(approve("alice"), ["groups"])])), 0, "not_in_required_group")
}

test_group_check_skipped_without_required_groups if {
	r := result_of(request_for(other_step, [approve("carol"), approve("dave")]))
	r.ignored == []
	r.counted == ["carol", "dave"]
	r.satisfied == true
}

test_duplicate_approver_counted_once if {
	r := result_of(request([approve("alice"), approve("alice"), approve("alice")]))
	r.counted == ["alice"]
	r.ignored == [{"index": 1, "approver": "alice", "reason": "duplicate_approver"}, {"index": 2, "approver": "alice", "reason": "duplicate_approver"}]
	r.missing.approvals == 1
	r.satisfied == false
}

test_ineligible_approval_does_not_make_a_duplicate if {
	# alice's first approval is ignored (revoked key): her second one counts.
	r := result_of(request([object.union(approve("alice"), {"key_valid": false}), approve("bob"), approve("alice")]))
	r.ignored == [{"index": 0, "approver": "alice", "reason": "key_invalid"}]
	r.counted == ["alice", "bob"]
	r.satisfied == true
}

test_first_decision_of_an_approver_stands if {
	# alice approved, then rejected: the rejection is a duplicate and is ignored.
	r := result_of(request([approve("alice"), reject("alice"), approve("bob")]))
	ignored_as(r, 1, "duplicate_approver")
	r.rejected == false
	r.satisfied == true

	# alice rejected, then approved: the plan stays rejected.
	s := result_of(request([reject("alice"), approve("alice"), approve("bob")]))
	ignored_as(s, 1, "duplicate_approver")
	s.rejected == true
	s.counted == ["bob"]
	s.satisfied == false
}

test_ignore_reason_precedence if {
	# Every reason applies at once: only the first by precedence is reported.
	a := {"approver": "plan-bot", "role": "planner", "groups": [], "decision": "approve", "plan_id": "sha256:0", "at": now, "key_valid": false}
	result_of(request([a])).ignored == [{"index": 0, "approver": "plan-bot", "reason": "self_approval"}]
	b := object.union(a, {"approver": "dave"})
	result_of(request([b])).ignored == [{"index": 0, "approver": "dave", "reason": "not_an_approver"}]
	c := object.union(b, {"role": "approver"})
	result_of(request([c])).ignored == [{"index": 0, "approver": "dave", "reason": "wrong_plan"}]
	d := object.union(c, {"plan_id": plan_id})
	result_of(request([d])).ignored == [{"index": 0, "approver": "dave", "reason": "key_invalid"}]
	e := object.union(d, {"key_valid": true})
	result_of(request([e])).ignored == [{"index": 0, "approver": "dave", "reason": "not_in_required_group"}]
}

test_ignored_listed_in_approval_order if {
	approvals := [
		approve("dave"), approve("alice"), approve("plan-bot"), approve("alice"), approve("bob"),
		approve("carol"), approve("dave"), approve("bob"), approve("bob"), approve("alice"),
		object.union(approve("carol"), {"key_valid": false}),
	]
	r := result_of(request(approvals))
	[e.index | some e in r.ignored] == [0, 2, 3, 5, 6, 7, 8, 9, 10]
	[e.reason | some e in r.ignored] == [
		"not_in_required_group", "self_approval", "duplicate_approver", "not_in_required_group",
		"not_in_required_group", "duplicate_approver", "duplicate_approver", "duplicate_approver", "key_invalid",
	]
	r.counted == ["alice", "bob"]
	r.satisfied == true
}

# ---------------------------------------------------------------------------
# Rejection
# ---------------------------------------------------------------------------

test_valid_reject_rejects_plan if {
	r := result_of(request([approve("alice"), approve("bob"), reject("carol")])) with data.writ.approval_rules as {"default": {"quorum": 2}}
	r.rejected == true
	r.satisfied == false
	r.counted == ["alice", "bob"]
}

test_single_reject_enough_even_with_quorum if {
	r := result_of(request([reject("alice"), approve("bob")]))
	r.rejected == true
	r.satisfied == false
	r.counted == ["bob"]
	r.missing == {"approvals": 1, "groups": []}
}

test_ignored_reject_does_not_reject if {
	every a in [
		reject("plan-bot"),
		reject("carol"),
		object.union(reject("alice"), {"role": "executor"}),
		object.union(reject("alice"), {"plan_id": "sha256:other"}),
		object.union(reject("alice"), {"key_valid": false}),
	] {
		r := result_of(request([a, approve("alice"), approve("bob")]))
		r.rejected == false
		r.satisfied == true
	}
}

test_reject_does_not_cover_group if {
	r := result_of(request([reject("alice")]))
	r.missing.groups == ["code-owners"]
	r.counted == []
}

# ---------------------------------------------------------------------------
# Required groups
# ---------------------------------------------------------------------------

test_missing_groups_reported if {
	rules := {"default": {"quorum": 2, "required_groups": ["code-owners", "security"]}}
	r := result_of(request([approve("alice"), approve("bob")])) with data.writ.approval_rules as rules
	r.counted == ["alice", "bob"]
	r.missing == {"approvals": 0, "groups": ["security"]}
	r.satisfied == false
	s := result_of(request([approve("alice"), approve("carol")])) with data.writ.approval_rules as rules
	s.missing == {"approvals": 0, "groups": []}
	s.satisfied == true
}

test_ignored_approval_does_not_cover_group if {
	rules := {"default": {"quorum": 2, "required_groups": ["code-owners", "security"]}}
	carol := object.union(approve("carol"), {"key_valid": false})
	r := result_of(request([approve("alice"), approve("bob"), carol])) with data.writ.approval_rules as rules
	r.missing.groups == ["security"]
	r.satisfied == false
}

test_one_approver_may_cover_several_groups if {
	rules := {"default": {"quorum": 1, "required_groups": ["code-owners", "security"]}}
	erin := object.union(approve("erin"), {"groups": ["security", "code-owners", "ops"]})
	r := result_of(request([erin])) with data.writ.approval_rules as rules
	r.satisfied == true
	r.missing.groups == []
}

# ---------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------

test_expired_plan_not_satisfied if {
	approvals := [approve("alice"), approve("bob")]
	every t in [plan.expires_at, "2026-11-22T20:00:00.000000001Z", "2026-11-23T00:00:00Z", "2026-11-22T21:00:00+01:00"] {
		r := result_of(object.union(request(approvals), {"now": t}))
		r.expired == true
		r.satisfied == false
		r.counted == ["alice", "bob"]
	}
}

test_not_expired_just_before_expiry if {
	r := result_of(object.union(request([approve("alice"), approve("bob")]), {"now": "2026-11-22T19:59:59.999999999Z"}))
	r.expired == false
	r.satisfied == true
}

# ---------------------------------------------------------------------------
# Violations
# ---------------------------------------------------------------------------

test_plan_ttl_too_long if {
	p := object.union(plan, {"expires_at": "2026-11-23T08:00:00.000000001Z"})
	r := result_of({"plan": p, "approvals": [approve("alice"), approve("bob")], "now": now})
	violation_codes(r) == {"plan_ttl_too_long"}
	r.satisfied == false
}

test_plan_ttl_at_limit_allowed if {
	p := object.union(plan, {"expires_at": "2026-11-23T08:00:00Z"})
	r := result_of({"plan": p, "approvals": [approve("alice"), approve("bob")], "now": now})
	r.violations == set()
	r.satisfied == true
}

test_plan_ttl_uses_strictest_rule if {
	rules := {"default": {"quorum": 2, "max_ttl_seconds": 86400}, "servers": {"git": {"max_ttl_seconds": 3600}}}
	r := result_of(request([approve("alice"), approve("bob")])) with data.writ.approval_rules as rules
	violation_codes(r) == {"plan_ttl_too_long"}
	some v in r.violations
	contains(v.message, "3600")
}

test_plan_ttl_compares_instants if {
	# Created 08:00+01:00 (07:00Z), expires 08:00Z next day: 25 h.
	p := object.union(plan, {"created_at": "2026-11-22T08:00:00+01:00", "expires_at": "2026-11-23T08:00:00Z"})
	violation_codes(result_of({"plan": p, "approvals": [], "now": now})) == {"plan_ttl_too_long"}
}

test_plan_empty if {
	r := result_of(request_for([], [approve("alice"), approve("bob")]))
	violation_codes(r) == {"plan_empty"}
	r.satisfied == false
}

test_plan_with_steps_not_empty if {
	r := result_of(request([]))
	r.violations == set()
}

# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

incomplete(i) if {
	r := result_of(i)
	r.satisfied == false
	violation_codes(r) == {"input_incomplete"}
	r.counted == []
	r.ignored == []
}

test_garbage_input_incomplete if {
	every i in [{}, [], "plan", 7, null, {"plan": null, "approvals": [], "now": now}] {
		incomplete(i)
	}
}

test_incomplete_input_reports_no_other_violation if {
	# An empty plan with an over-long lifetime, but `now` is malformed: only input_incomplete.
	p := object.union(plan, {"steps": [], "expires_at": "2026-12-22T08:00:00Z"})
	incomplete({"plan": p, "approvals": [], "now": "now"})
}

test_input_problems_listed_precisely if {
	approval.input_problems == {"the input must be a JSON object"} with input as []
	approval.input_problems == set() with input as request([approve("alice")])
	approval.input_problems == {"plan.steps must be a list of objects with string server and tool"} with input as request_for("git", [])
	approval.input_problems == {"approvals must be a list of objects with a string approver and a decision of approve or reject"} with input as object.union(request([]), {"approvals": 1})
	count(approval.input_problems) == 5 with input as {}
}

test_missing_field_incomplete if {
	every key in ["plan", "approvals", "now"] {
		incomplete(object.remove(request([approve("alice"), approve("bob")]), [key]))
	}
	every key in ["id", "planner", "created_at", "expires_at", "steps"] {
		incomplete({"plan": object.remove(plan, [key]), "approvals": [approve("alice"), approve("bob")], "now": now})
	}
}

test_malformed_field_incomplete if {
	good := request([approve("alice"), approve("bob")])
	every patch in [
		{"now": "2026-11-22 09:00:00Z"},
		{"now": 1795341600},
		{"approvals": {"alice": "approve"}},
		{"approvals": [3]},
		{"approvals": [{"approver": "alice"}]},
		{"approvals": [object.union(approve("alice"), {"decision": "abstain"})]},
		{"approvals": [object.union(approve("alice"), {"approver": ""})]},
		{"plan": {"id": 5}},
		{"plan": {"planner": ""}},
		{"plan": {"created_at": "2026-02-30T00:00:00Z"}},
		{"plan": {"expires_at": "later"}},
		{"plan": {"steps": "git_commit"}},
		{"plan": {"steps": [{"server": "git"}]}},
		{"plan": {"steps": [{"server": 1, "tool": "git_commit"}]}},
	] {
		incomplete(object.union(good, patch))
	}
}

test_incomplete_result_still_reports_requirement_gap if {
	r := result_of({"plan": plan, "approvals": "alice", "now": now})
	r.missing == {"approvals": 2, "groups": ["code-owners"]}
	r.expired == false
	r.rejected == false
	some v in r.violations
	contains(v.message, "approvals must be a list")
}

# ---------------------------------------------------------------------------
# Shape of the result
# ---------------------------------------------------------------------------

test_result_has_exactly_the_contract_keys if {
	every i in [{}, request([])] {
		r := result_of(i)
		object.keys(r) == {"satisfied", "rejected", "expired", "counted", "missing", "ignored", "violations"}
		object.keys(r.missing) == {"approvals", "groups"}
	}
}

test_every_violation_has_code_and_message if {
	inputs := [
		{},
		request_for([], []),
		{"plan": object.union(plan, {"expires_at": "2026-12-01T00:00:00Z"}), "approvals": [], "now": now},
	]
	every i in inputs {
		r := result_of(i)
		count(r.violations) > 0
		every v in r.violations {
			object.keys(v) == {"code", "message"}
			regex.match(`^[a-z]+(_[a-z]+)*$`, v.code)
			count(v.message) > 20
		}
	}
}

# ---------------------------------------------------------------------------
# Schedule (reminders and escalation for the approval workflow)
# ---------------------------------------------------------------------------

schedule_of(i) := s if {
	s := approval.schedule with input as i
}

test_schedule_from_shipped_rules if {
	schedule_of(request([])) == {"remind_after_hours": 4, "escalate_after_hours": 12, "escalate_to": ["security"]}
}

test_schedule_none_when_no_rule_asks if {
	s := approval.schedule with input as request_for(other_step, [])
		with data.writ.approval_rules as {"default": {"quorum": 1}}
	s == {"remind_after_hours": null, "escalate_after_hours": null, "escalate_to": []}
}

test_schedule_takes_the_earliest_and_every_group if {
	rules := {
		"default": {"quorum": 1, "remind_after_hours": 8, "escalate_to": ["leads"]},
		"servers": {"git": {"remind_after_hours": 2, "escalate_after_hours": 6, "escalate_to": ["sre-leads"]}},
	}
	s := approval.schedule with input as request([]) with data.writ.approval_rules as rules
	s == {"remind_after_hours": 2, "escalate_after_hours": 6, "escalate_to": ["leads", "sre-leads"]}
}

test_schedule_ignores_non_positive_and_non_numeric_hours if {
	rules := {"default": {"quorum": 1, "remind_after_hours": 0, "escalate_after_hours": "soon"}}
	s := approval.schedule with input as request([]) with data.writ.approval_rules as rules
	s.remind_after_hours == null
	s.escalate_after_hours == null
}
