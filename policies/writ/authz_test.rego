# Unit tests for writ.authz. Run by `writ policy test` on regorus and on OPA.
#
# Mock rules and data with their full path (`with data.writ.authz.permit as ...`):
# regorus does not resolve a short rule name as a `with` target.
package writ.authz_test

import data.writ.authz

# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------

now := "2026-11-22T09:00:00Z"

approved_plan := {
	"id": "sha256:5d41402abc4b2a76b9719d911017c592ae2b7e5f3c0a2f6c5d1f1b4c8e3f9a01",
	"state": "approved",
	"planner": "plan-bot",
	"expires_at": "2026-11-22T10:00:00Z",
	"step_matches": true,
	"step_index": 0,
}

# A well-formed call of `server`.`name` by a principal with `role`, under an approved plan.
call(role, server, name) := {
	"principal": principal_for(role),
	"role": role,
	"groups": [],
	"session": {"id": "s1", "locked": false},
	"tool": {
		"server": server,
		"name": name,
		"definition_digest": "sha256:0f1e2d3c",
		"annotations": {"readOnlyHint": null, "destructiveHint": null, "idempotentHint": null, "openWorldHint": null},
	},
	"args": {},
	"plan": approved_plan,
	"now": now,
}

principal_for("planner") := "plan-bot"

principal_for("executor") := "exec-bot"

principal_for("approver") := "alice"

principal_for("auditor") := "audit-bot"

principal_for("admin") := "root-admin"

# The executor commits under an approved plan: the one write that is allowed.
exec_write := object.union(call("executor", "git", "git_commit"), {"args": {"message": "fix typo"}})

# exec_write with its plan changed by `patch` (merged into the plan).
exec_write_plan(patch) := object.union(exec_write, {"plan": patch})

with_annotations(i, ann) := object.union(object.remove(i, ["tool"]), {"tool": object.union(object.remove(i.tool, ["annotations"]), {"annotations": ann})})

# `i` from an upstream whose writ.toml entry says trust_annotations = true (the gateway sets it).
trusted(i) := object.union(i, {"tool": {"annotations_trusted": true}})

decide(i) := d if {
	d := authz.decision with input as i
}

class_of(i) := c if {
	c := authz.class with input as i
}

codes(d) := {r.code | some r in d.reasons}

obligation_codes(d) := {o.code | some o in d.obligations}

denied_with(i, expected) if {
	d := decide(i)
	d.allow == false
	codes(d) == expected
}

allowed(i) if {
	d := decide(i)
	d.allow == true
	count(d.reasons) == 0
}

other_roles(allowed_roles) := {r | some r in authz.roles; not r in allowed_roles}

git_read_tools := ["git_status", "git_diff_unstaged", "git_diff_staged", "git_diff", "git_log", "git_show", "git_branch"]

git_write_tools := ["git_commit", "git_add", "git_reset", "git_create_branch", "git_checkout"]

fs_read_tools := ["read_file", "read_text_file", "read_media_file", "read_multiple_files", "list_directory", "list_directory_with_sizes", "directory_tree", "search_files", "get_file_info", "list_allowed_directories"]

fs_write_tools := ["write_file", "edit_file", "create_directory", "move_file"]

# A request other than tools/call, filled in as the gateway fills it: tool.name is the
# resource URI, the prompt (or template) name, or the method; no annotations, no digest.
request(role, m, server, name) := {
	"principal": principal_for(role),
	"role": role,
	"groups": [],
	"session": {"id": "s1", "locked": false},
	"method": m,
	"tool": {
		"server": server,
		"name": name,
		"definition_digest": null,
		"annotations": {"readOnlyHint": null, "destructiveHint": null, "idempotentHint": null, "openWorldHint": null},
	},
	"args": request_args[m],
	"plan": null,
	"now": now,
}

readme_uri := "file:///srv/repo/README.md"

request_args := {
	"resources/read": {},
	"resources/subscribe": {},
	"prompts/get": {"style": "short"},
	"completion/complete": {"argument": {"name": "style", "value": "sh"}, "context": {"arguments": {}}},
	"sampling/createMessage": {},
	"elicitation/create": {},
}

# One request of each method other than tools/call, by `role`.
requests(role) := [
	request(role, "resources/read", "fs", readme_uri),
	request(role, "resources/subscribe", "fs", readme_uri),
	request(role, "prompts/get", "git", "commit_message"),
	request(role, "completion/complete", "git", "commit_message"),
	request(role, "sampling/createMessage", "git", "sampling/createMessage"),
	request(role, "elicitation/create", "fs", "elicitation/create"),
]

with_method(i, m) := object.union(i, {"method": m})

# ---------------------------------------------------------------------------
# Tool classification
# ---------------------------------------------------------------------------

test_git_read_tools_are_read if {
	every name in git_read_tools {
		class_of(call("executor", "git", name)) == "read"
	}
}

test_git_write_tools_are_write if {
	every name in git_write_tools {
		class_of(call("executor", "git", name)) == "write"
	}
}

test_fs_read_tools_are_read if {
	every name in fs_read_tools {
		class_of(call("executor", "fs", name)) == "read"
	}
}

test_fs_write_tools_are_write if {
	every name in fs_write_tools {
		class_of(call("executor", "fs", name)) == "write"
	}
}

test_governance_tool_classes if {
	class_of(call("planner", "writ", "writ_plan_propose")) == "plan"
	class_of(call("executor", "writ", "writ_plan_begin")) == "execute"
	class_of(call("executor", "writ", "writ_plan_finish")) == "execute"
	class_of(call("executor", "writ", "writ_plan_status")) == "status"
}

test_unknown_tool_is_write if {
	class_of(call("executor", "git", "git_push")) == "write"
	class_of(call("executor", "fs", "delete_file")) == "write"
	class_of(call("executor", "writ", "writ_plan_delete")) == "write"
	class_of(call("executor", "shell", "run")) == "write"
}

test_trusted_read_only_hint_makes_unknown_tool_read if {
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": true}))) == "read"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": true, "destructiveHint": false}))) == "read"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": true, "destructiveHint": null}))) == "read"
	class_of(trusted(with_annotations(call("executor", "shell", "run"), {"readOnlyHint": true}))) == "read"
}

test_destructive_hint_overrides_read_only_hint if {
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": true, "destructiveHint": true}))) == "write"
}

test_missing_or_false_read_only_hint_is_write if {
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {}))) == "write"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), null))) == "write"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": false}))) == "write"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": null}))) == "write"
	class_of(trusted(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": "true"}))) == "write"
	class_of(trusted(object.union(call("executor", "git", "git_blame"), {"tool": {"annotations": null}}))) == "write"
}

test_untrusted_upstream_hint_ignored if {
	# Trust comes from the upstream's writ.toml entry (annotations_trusted), never from its name:
	# an upstream configured as "git" that claims readOnlyHint gets a write. Writ's own server
	# is never trusted.
	class_of(with_annotations(call("executor", "git", "git_blame"), {"readOnlyHint": true})) == "write"
	class_of(with_annotations(call("executor", "fs", "fs_new_tool"), {"readOnlyHint": true})) == "write"
	class_of(with_annotations(call("executor", "shell", "run"), {"readOnlyHint": true, "destructiveHint": false})) == "write"
	i := with_annotations(call("executor", "git", "write_file"), {"readOnlyHint": true})
	class_of(object.union(i, {"tool": {"annotations_trusted": false}})) == "write"
	class_of(trusted(with_annotations(call("executor", "writ", "writ_plan_delete"), {"readOnlyHint": true}))) == "write"
}

test_lying_upstream_named_git_planner_write_denied if {
	i := with_annotations(call("planner", "git", "write_file"), {"readOnlyHint": true, "destructiveHint": false})
	some r in decide(object.union(i, {"plan": null})).reasons
	r.code == "planner_cannot_write"

	# Trust in data by the server's name is no longer read.
	class_of(i) == "write" with data.writ.tools as {"servers": {"git": {"trust_annotations": true, "tools": {}}}}
}

test_annotations_trusted_must_be_a_boolean if {
	i := with_annotations(call("planner", "git", "git_blame"), {"readOnlyHint": true})
	some p in authz.input_problems with input as object.union(i, {"tool": {"annotations_trusted": "yes"}})
	p == "tool.annotations_trusted must be a boolean when present"
	count(authz.input_problems) == 0 with input as object.union(i, {"tool": {"annotations_trusted": false}})
	count(authz.input_problems) == 0 with input as i
	not allowed(object.union(i, {"tool": {"annotations_trusted": null}}))
	not allowed(object.union(i, {"tool": {"annotations_trusted": 1}}))
}

test_annotation_hint_overridden_by_data if {
	# data says write, the (trusted) server claims read-only: write.
	class_of(trusted(with_annotations(call("executor", "git", "git_commit"), {"readOnlyHint": true, "destructiveHint": false}))) == "write"

	# data says read, the server claims destructive: read.
	class_of(trusted(with_annotations(call("executor", "git", "git_status"), {"readOnlyHint": false, "destructiveHint": true}))) == "read"
}

test_governance_class_honoured_only_on_writ_server if {
	tools := {"servers": {"git": {"tools": {"git_plan": "plan", "git_run": "execute", "git_peek": "status"}}}}
	every name in ["git_plan", "git_run", "git_peek"] {
		class_of(call("planner", "git", name)) == "write" with data.writ.tools as tools
	}
}

test_unknown_class_in_data_is_write if {
	tools := {"servers": {"git": {"tools": {"git_status": "reed"}}}}
	i := with_annotations(call("executor", "git", "git_status"), {"readOnlyHint": true})
	class_of(i) == "write" with data.writ.tools as tools
}

test_class_data_can_be_replaced if {
	tools := {"servers": {"git": {"tools": {"git_commit": "read"}}}}
	class_of(call("executor", "git", "git_commit")) == "read" with data.writ.tools as tools
	class_of(call("executor", "git", "git_status")) == "write" with data.writ.tools as tools
}

test_no_tool_data_means_everything_is_write if {
	class_of(call("executor", "git", "git_status")) == "write" with data.writ.tools as {}
	i := with_annotations(call("executor", "git", "git_log"), {"readOnlyHint": true})
	class_of(i) == "write" with data.writ.tools as {}
}

test_unknown_class_on_writ_server_is_write if {
	tools := {"servers": {"writ": {"tools": {"writ_plan_propose": "admin", "writ_plan_status": "status"}}}}
	i := with_annotations(call("planner", "writ", "writ_plan_propose"), {"readOnlyHint": true})
	class_of(i) == "write" with data.writ.tools as tools
	class_of(call("planner", "writ", "writ_plan_status")) == "status" with data.writ.tools as tools
}

test_malformed_tool_data_means_write if {
	i := with_annotations(call("executor", "git", "git_status"), {"readOnlyHint": true})
	class_of(i) == "write" with data.writ.tools as {"servers": {"git": {"tools": "all"}}}
	class_of(i) == "write" with data.writ.tools as {"servers": "git"}
	class_of(i) == "write" with data.writ.tools as {"servers": {"git": {"tools": []}}}

	# Without an entry, only the operator's trust in the upstream's hint can make it a read.
	class_of(trusted(i)) == "read" with data.writ.tools as {"servers": {"git": {"tools": []}}}
}

test_class_defined_for_garbage_input if {
	class_of({}) == "write"
	class_of({"tool": "git_status"}) == "write"
}

# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------

test_planner_read_allowed if {
	allowed(call("planner", "git", "git_status"))
	allowed(call("planner", "fs", "read_text_file"))
}

test_executor_read_allowed if {
	allowed(call("executor", "git", "git_log"))
	allowed(call("executor", "fs", "list_directory"))
}

test_read_needs_no_plan if {
	i := object.union(call("executor", "git", "git_diff"), {"plan": null})
	allowed(i)
	count(decide(i).obligations) == 0
}

test_read_denied_for_other_roles if {
	every role in {"approver", "auditor", "admin"} {
		denied_with(call(role, "git", "git_status"), {"role_not_permitted"})
	}
}

test_read_role_message_names_role if {
	d := decide(call("auditor", "fs", "read_file"))
	some r in d.reasons
	r.code == "role_not_permitted"
	contains(r.message, "auditor")
}

# ---------------------------------------------------------------------------
# Methods other than tools/call: resources, prompts, completions, sampling, elicitation
# ---------------------------------------------------------------------------

test_requests_cover_every_non_tool_method if {
	{i.method | some i in requests("planner")} == authz.non_tool_methods
	authz.non_tool_methods == authz.methods - {"tools/call"}
	count(authz.methods) == 7
}

test_non_tool_methods_are_read if {
	every role in authz.roles {
		every i in requests(role) {
			class_of(i) == "read"
		}
	}
}

test_non_tool_methods_allowed_for_planner_and_executor if {
	every role in {"planner", "executor"} {
		every i in requests(role) {
			allowed(i)
		}
	}
}

test_non_tool_methods_carry_no_obligation if {
	every role in authz.roles {
		every i in requests(role) {
			decide(i).obligations == set()
		}
	}
}

test_non_tool_methods_ignore_the_plan if {
	# Reads: the bound plan, whatever its state, neither allows nor denies them.
	every plan in [approved_plan, object.union(approved_plan, {"state": "rejected", "step_matches": false}), object.union(approved_plan, {"planner": "exec-bot"})] {
		every i in requests("executor") {
			allowed(object.union(i, {"plan": plan}))
		}
	}
}

test_non_tool_methods_denied_for_other_roles if {
	every role in {"approver", "auditor", "admin"} {
		every i in requests(role) {
			denied_with(i, {"role_not_permitted"})
		}
	}
}

test_non_tool_method_role_message_names_role_and_method if {
	d := decide(request("approver", "prompts/get", "git", "commit_message"))
	some r in d.reasons
	r.code == "role_not_permitted"
	r.message == "the approver role may not get prompts (prompts/get): only planners and executors may"
	every role in {"approver", "auditor", "admin"} {
		every i in requests(role) {
			some q in decide(i).reasons
			contains(q.message, role)
			contains(q.message, i.method)
			not contains(q.message, "read tools")
		}
	}
}

test_tools_json_entry_does_not_classify_non_tool_methods if {
	# A "write" entry under the resource URI (or a governance class under the prompt name)
	# classifies tools/call only: the resources/read and prompts/get are still reads.
	tools := {"servers": {
		"fs": {"tools": {readme_uri: "write"}},
		"git": {"tools": {"commit_message": "plan"}},
	}}
	class_of(request("planner", "resources/read", "fs", readme_uri)) == "read" with data.writ.tools as tools
	allowed(request("planner", "resources/read", "fs", readme_uri)) with data.writ.tools as tools
	allowed(request("planner", "resources/subscribe", "fs", readme_uri)) with data.writ.tools as tools
	allowed(request("executor", "prompts/get", "git", "commit_message")) with data.writ.tools as tools
	class_of(call("planner", "fs", readme_uri)) == "write" with data.writ.tools as tools
}

test_annotation_hints_do_not_classify_non_tool_methods if {
	i := request("planner", "resources/read", "git", "git://HEAD")
	class_of(with_annotations(i, {"readOnlyHint": false, "destructiveHint": true})) == "read"
	class_of(with_annotations(i, {"readOnlyHint": true})) == "read"
}

test_non_tool_methods_on_unknown_server_are_read if {
	allowed(request("planner", "resources/read", "shell", "file:///etc/hosts"))
	allowed(request("executor", "prompts/get", "slack", "summarize"))
	allowed(request("planner", "resources/read", "fs", readme_uri)) with data.writ.tools as {}
}

test_absent_or_null_method_is_tools_call if {
	every i in [exec_write, call("planner", "git", "git_commit"), call("auditor", "git", "git_status"), object.union(exec_write, {"plan": null})] {
		authz.method == "tools/call" with input as i
		authz.method == "tools/call" with input as with_method(i, null)
		decide(i) == decide(with_method(i, "tools/call"))
		decide(with_method(i, null)) == decide(with_method(i, "tools/call"))
	}
	class_of(with_method(call("executor", "git", "git_commit"), null)) == "write"
	class_of(with_method(call("executor", "git", "git_commit"), "tools/call")) == "write"
	class_of(with_method(call("planner", "writ", "writ_plan_propose"), null)) == "plan"
	allowed(with_method(call("planner", "writ", "writ_plan_propose"), "tools/call"))
}

test_locked_session_denies_non_tool_methods if {
	every role in {"planner", "executor"} {
		every i in requests(role) {
			d := decide(object.union(i, {"session": {"locked": true}}))
			d.allow == false
			codes(d) == {"session_locked"}
			d.obligations == set()
		}
	}
	denied_with(object.union(request("admin", "prompts/get", "git", "commit_message"), {"session": {"locked": true}}), {"session_locked", "role_not_permitted"})
}

test_bad_method_incomplete if {
	every m in ["tools/list", "resources/list", "prompts/list", "initialize", "notifications/cancelled", "Tools/call", "tools/call ", "", 3, true, false, {}, ["tools/call"], {"method": "tools/call"}] {
		denied_with(with_method(exec_write, m), {"input_incomplete"})
		denied_with(with_method(call("planner", "git", "git_status"), m), {"input_incomplete"})
		authz.input_problems == {"method must be one of tools/call, resources/read, resources/subscribe, prompts/get, completion/complete, sampling/createMessage, elicitation/create"} with input as with_method(exec_write, m)
		class_of(with_method(exec_write, m)) == "write"
	}
}

test_non_tool_method_on_writ_server_incomplete if {
	every m in authz.non_tool_methods {
		every role in authz.roles {
			i := request(role, m, "writ", "writ_plan_status")
			denied_with(i, {"input_incomplete"})
			decide(i).obligations == set()
			authz.input_problems == {"a method other than tools/call may not name the writ server: Writ's governance server has no resources, prompts or completions"} with input as i
		}
	}
}

test_bad_method_message_names_the_methods if {
	d := decide(with_method(exec_write, "tools/list"))
	some r in d.reasons
	contains(r.message, "method must be one of tools/call, resources/read")
}

test_class_defined_once_for_every_method if {
	# `class` has several definitions: for each method, known and unknown names, with and
	# without trusted hints, exactly one value (a conflict would be an evaluation error).
	inputs := [with_annotations(call("executor", s, n), ann) |
		some s in ["git", "fs", "writ", "shell"]
		some n in ["git_status", "git_commit", "writ_plan_propose", "git_blame", readme_uri]
		some ann in [{}, {"readOnlyHint": true}, {"readOnlyHint": true, "destructiveHint": true}]
	]
	every i in inputs {
		every m in authz.methods | {null, "tools/list", 3} {
			class_of(with_method(i, m)) in {"read", "write", "plan", "execute", "status"}
		}
	}

	# Classes in an array (malformed data) and a number for a name (malformed input): the
	# array "entry" does not count, the trusted hint does.
	j := object.union(call("executor", "git", "x"), {"tool": {"name": 0, "annotations": {"readOnlyHint": true}, "annotations_trusted": true}})
	class_of(j) == "read" with data.writ.tools as {"servers": {"git": {"tools": ["write"]}}}
}

# A security team narrows these methods with a deny rule of its own in package writ.authz
# (the one in team_rule_example_test.rego, shown in docs/policies.md): no resources/read
# on the server "vault", whatever the role.
test_team_rule_denies_resources_read_on_one_server if {
	every role in {"planner", "executor"} {
		d := decide(request(role, "resources/read", "vault", "vault://secrets/db"))
		d.allow == false
		codes(d) == {"resource_read_forbidden"}
	}
	denied_with(request("auditor", "resources/read", "vault", "vault://secrets/db"), {"resource_read_forbidden", "role_not_permitted"})
}

test_team_rule_leaves_other_requests_alone if {
	allowed(request("planner", "resources/read", "fs", readme_uri))
	allowed(request("planner", "resources/subscribe", "vault", "vault://secrets/db"))
	allowed(request("executor", "prompts/get", "vault", "rotate"))
	allowed(call("planner", "vault", "vault_list")) with data.writ.tools as {"servers": {"vault": {"tools": {"vault_list": "read"}}}}
}

# ---------------------------------------------------------------------------
# Writ's governance tools
# ---------------------------------------------------------------------------

test_planner_may_propose_plan if {
	i := object.union(call("planner", "writ", "writ_plan_propose"), {"plan": null})
	allowed(i)
	count(decide(i).obligations) == 0
}

test_propose_denied_for_other_roles if {
	every role in other_roles({"planner"}) {
		denied_with(call(role, "writ", "writ_plan_propose"), {"role_not_permitted"})
	}
}

test_executor_may_begin_and_finish_plan if {
	allowed(call("executor", "writ", "writ_plan_begin"))
	allowed(call("executor", "writ", "writ_plan_finish"))
}

test_execute_denied_for_other_roles if {
	every role in other_roles({"executor"}) {
		denied_with(call(role, "writ", "writ_plan_begin"), {"role_not_permitted"})
		denied_with(call(role, "writ", "writ_plan_finish"), {"role_not_permitted"})
	}
}

test_status_allowed_for_planner_and_executor if {
	allowed(call("planner", "writ", "writ_plan_status"))
	allowed(call("executor", "writ", "writ_plan_status"))
}

test_status_denied_for_other_roles if {
	every role in other_roles({"planner", "executor"}) {
		denied_with(call(role, "writ", "writ_plan_status"), {"role_not_permitted"})
	}
}

test_governance_tools_carry_no_obligation if {
	every name in ["writ_plan_propose", "writ_plan_begin", "writ_plan_finish", "writ_plan_status"] {
		every role in authz.roles {
			not "plan_required" in obligation_codes(decide(call(role, "writ", name)))
		}
	}
}

# ---------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------

test_executor_write_with_approved_plan_allowed if {
	d := decide(exec_write)
	d.allow == true
	d.reasons == set()
	obligation_codes(d) == {"plan_required"}
}

test_executor_write_with_executing_plan_allowed if {
	allowed(exec_write_plan({"state": "executing"}))
	allowed(exec_write_plan({"step_index": null}))
}

test_executor_fs_write_allowed_with_plan if {
	allowed(object.union(call("executor", "fs", "edit_file"), {"args": {"path": "/w/README.md"}}))
}

test_planner_write_denied if {
	d := decide(call("planner", "git", "git_commit"))
	d.allow == false
	codes(d) == {"planner_cannot_write"}
}

test_planner_write_denied_with_or_without_plan if {
	# A planner holding an approved plan still may not write.
	denied_with(call("planner", "fs", "write_file"), {"planner_cannot_write"})
	denied_with(object.union(call("planner", "fs", "write_file"), {"plan": null}), {"planner_cannot_write"})
}

test_planner_write_locks_session if {
	d := decide(call("planner", "fs", "write_file"))
	obligation_codes(d) == {"plan_required", "lock_session"}
}

test_executor_write_without_plan_denied if {
	i := object.union(exec_write, {"plan": null})
	d := decide(i)
	d.allow == false
	codes(d) == {"plan_required"}
	obligation_codes(d) == {"plan_required"}
}

test_plan_required_message_tells_how_to_get_a_plan if {
	d := decide(object.union(exec_write, {"plan": null}))
	some r in d.reasons
	r.code == "plan_required"
	contains(r.message, "writ_plan_propose")
}

test_self_execution_denied if {
	i := object.union(exec_write, {"plan": {"planner": "exec-bot"}})
	denied_with(i, {"self_execution"})
}

test_plan_by_other_principal_not_self_execution if {
	d := decide(exec_write_plan({"planner": "other-planner"}))
	not "self_execution" in codes(d)
	d.allow == true
}

test_plan_expired_by_state if {
	denied_with(exec_write_plan({"state": "expired"}), {"plan_expired"})
}

test_plan_expired_at_expiry_time if {
	denied_with(exec_write_plan({"expires_at": now}), {"plan_expired"})
	denied_with(exec_write_plan({"expires_at": "2026-11-22T08:59:59.999999999Z"}), {"plan_expired"})
	denied_with(exec_write_plan({"expires_at": "2025-01-01T00:00:00Z"}), {"plan_expired"})
}

test_plan_not_expired_just_before_expiry if {
	allowed(exec_write_plan({"expires_at": "2026-11-22T09:00:00.000000001Z"}))
}

test_plan_expiry_compares_instants_not_strings if {
	# 10:00 at +02:00 is 08:00Z: already past at 09:00Z.
	denied_with(exec_write_plan({"expires_at": "2026-11-22T10:00:00+02:00"}), {"plan_expired"})

	# 08:30 at -01:00 is 09:30Z: still valid.
	allowed(exec_write_plan({"expires_at": "2026-11-22T08:30:00-01:00"}))
}

test_plan_not_approved_denied if {
	every state in ["proposed", "pending", "rejected", "completed", "failed", "aborted"] {
		denied_with(exec_write_plan({"state": state}), {"plan_not_approved"})
	}
}

test_plan_not_approved_message_names_state if {
	d := decide(exec_write_plan({"state": "pending"}))
	some r in d.reasons
	r.code == "plan_not_approved"
	contains(r.message, "pending")
}

test_plan_not_approved_message_for_finished_plan if {
	every state in ["rejected", "completed", "failed", "aborted"] {
		d := decide(exec_write_plan({"state": state}))
		some r in d.reasons
		r.code == "plan_not_approved"
		contains(r.message, "propose a new plan")
	}
}

test_expired_plan_not_reported_as_not_approved if {
	denied_with(exec_write_plan({"state": "pending", "expires_at": "2026-11-22T08:00:00Z"}), {"plan_expired"})
}

test_executor_write_step_not_in_plan_denied if {
	denied_with(exec_write_plan({"step_matches": false}), {"step_not_in_plan"})
}

test_executor_write_step_not_in_plan_locks_session if {
	d := decide(exec_write_plan({"step_matches": false}))
	obligation_codes(d) == {"plan_required", "lock_session"}
}

test_all_plan_reasons_reported_together if {
	i := exec_write_plan({"planner": "exec-bot", "state": "rejected", "step_matches": false})
	denied_with(i, {"self_execution", "plan_not_approved", "step_not_in_plan"})
	j := exec_write_plan({"planner": "exec-bot", "state": "expired", "step_matches": false})
	denied_with(j, {"self_execution", "plan_expired", "step_not_in_plan"})
}

test_write_denied_for_non_writer_roles if {
	every role in {"approver", "auditor", "admin"} {
		denied_with(call(role, "git", "git_commit"), {"role_cannot_write"})
		denied_with(object.union(call(role, "fs", "move_file"), {"plan": null}), {"role_cannot_write"})
	}
}

test_non_writer_roles_not_checked_against_plan if {
	# role_cannot_write is the whole answer; plan problems only concern executors.
	i := object.union(call("admin", "git", "git_reset"), {"plan": {"state": "pending", "step_matches": false}})
	denied_with(i, {"role_cannot_write"})
}

test_write_obligation_plan_required_allowed_or_not if {
	every role in authz.roles {
		"plan_required" in obligation_codes(decide(call(role, "git", "git_add")))
	}
	"plan_required" in obligation_codes(decide(object.union(exec_write, {"session": {"locked": true}})))
}

test_unknown_tool_needs_plan if {
	d := decide(object.union(call("executor", "shell", "run"), {"plan": null}))
	codes(d) == {"plan_required"}
	obligation_codes(d) == {"plan_required"}
	allowed(call("executor", "shell", "run"))
}

# ---------------------------------------------------------------------------
# Locked sessions
# ---------------------------------------------------------------------------

test_locked_session_denies_read if {
	denied_with(object.union(call("planner", "git", "git_status"), {"session": {"locked": true}}), {"session_locked"})
}

test_locked_session_denies_approved_write if {
	denied_with(object.union(exec_write, {"session": {"locked": true}}), {"session_locked"})
}

test_locked_session_denies_governance_tools if {
	denied_with(object.union(call("executor", "writ", "writ_plan_finish"), {"session": {"locked": true}}), {"session_locked"})
}

test_locked_session_reported_with_other_reasons if {
	i := object.union(call("auditor", "git", "git_status"), {"session": {"locked": true}})
	denied_with(i, {"session_locked", "role_not_permitted"})
}

test_unlocked_session_not_denied if {
	d := decide(call("planner", "git", "git_status"))
	not "session_locked" in codes(d)
}

# ---------------------------------------------------------------------------
# The lock_session obligation
# ---------------------------------------------------------------------------

test_lock_session_only_for_configured_codes if {
	not "lock_session" in obligation_codes(decide(object.union(exec_write, {"plan": null})))
	not "lock_session" in obligation_codes(decide(exec_write_plan({"state": "pending"})))
	not "lock_session" in obligation_codes(decide(call("admin", "git", "git_commit")))
	not "lock_session" in obligation_codes(decide(object.union(exec_write, {"session": {"locked": true}})))
	not "lock_session" in obligation_codes(decide(exec_write))
}

test_lock_session_follows_config if {
	cfg := {"lock_session_on": ["role_not_permitted"]}
	d := decide(call("approver", "git", "git_status")) with data.writ.config as cfg
	obligation_codes(d) == {"lock_session"}
	e := decide(call("planner", "git", "git_commit")) with data.writ.config as cfg
	obligation_codes(e) == {"plan_required"}
}

test_lock_session_without_config if {
	d := decide(call("planner", "git", "git_commit")) with data.writ.config as {}
	obligation_codes(d) == {"plan_required"}
}

test_lock_session_message_names_codes if {
	d := decide(exec_write_plan({"step_matches": false, "planner": "exec-bot"}))
	some o in d.obligations
	o.code == "lock_session"
	contains(o.message, "step_not_in_plan")
}

test_lock_session_not_for_incomplete_input if {
	d := decide({}) with data.writ.config as {"lock_session_on": ["input_incomplete"]}
	d.obligations == set()
}

# ---------------------------------------------------------------------------
# The catch-all
# ---------------------------------------------------------------------------

test_not_permitted_when_no_rule_permits if {
	d := decide(call("planner", "git", "git_status")) with data.writ.authz.permit as false
	d.allow == false
	codes(d) == {"not_permitted"}
}

test_not_permitted_not_added_to_other_reasons if {
	d := decide(call("planner", "git", "git_commit")) with data.writ.authz.permit as false
	codes(d) == {"planner_cannot_write"}
}

test_permit_rules if {
	# Permit rules alone (deny reasons aside): each class for the roles that may use it.
	every role in {"planner", "executor"} {
		authz.permit with input as call(role, "git", "git_status")
		authz.permit with input as call(role, "writ", "writ_plan_status")
	}
	authz.permit with input as call("planner", "writ", "writ_plan_propose")
	authz.permit with input as call("executor", "writ", "writ_plan_begin")
	authz.permit with input as exec_write
	authz.permit with input as exec_write_plan({"state": "pending", "step_matches": false})
}

test_no_permit_rule_for_other_calls if {
	not authz.permit with input as call("approver", "git", "git_status")
	not authz.permit with input as call("executor", "writ", "writ_plan_propose")
	not authz.permit with input as call("planner", "writ", "writ_plan_begin")
	not authz.permit with input as call("admin", "writ", "writ_plan_status")
	not authz.permit with input as call("planner", "git", "git_commit")
	not authz.permit with input as call("approver", "git", "git_commit")
	not authz.permit with input as object.union(exec_write, {"plan": null})
}

test_deny_reason_beats_permit if {
	# A permit rule matches (executor, plan present) but a deny reason applies.
	i := exec_write_plan({"state": "pending"})
	authz.permit with input as i
	decide(i).allow == false
}

# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------

test_empty_input_incomplete if {
	d := decide({})
	d == {"allow": false, "reasons": d.reasons, "obligations": set()}
	codes(d) == {"input_incomplete"}
}

test_non_object_input_incomplete if {
	every i in [[], "exec-bot", 3, true, null] {
		denied_with(i, {"input_incomplete"})
	}
}

test_missing_field_incomplete if {
	every key in ["principal", "role", "groups", "session", "tool", "args", "plan", "now"] {
		denied_with(object.remove(exec_write, [key]), {"input_incomplete"})
	}
}

test_malformed_field_incomplete if {
	every patch in [
		{"principal": ""},
		{"principal": 7},
		{"role": "root"},
		{"role": null},
		{"groups": "code-owners"},
		{"groups": [1]},
		{"session": {"locked": "no"}},
		{"session": null},
		{"tool": {"name": 3}},
		{"tool": {"server": ""}},
		{"tool": {"annotations": "read-only"}},
		{"method": "tools/list"},
		{"method": 1},
		{"method": "resources/read", "tool": {"server": "writ"}},
		{"args": null},
		{"plan": "sha256:1"},
		{"plan": {"state": "done"}},
		{"plan": {"state": 3}},
		{"plan": {"planner": null}},
		{"plan": {"id": 1}},
		{"plan": {"expires_at": "tomorrow"}},
		{"plan": {"step_matches": "yes"}},
		{"plan": {"step_index": "0"}},
		{"now": 1795341600},
	] {
		denied_with(object.union(exec_write, patch), {"input_incomplete"})
	}
}

test_malformed_timestamps_incomplete if {
	every t in [
		"2026-11-22t09:00:00z",
		"2026-11-22 09:00:00Z",
		"2026-11-22T09:00:60Z",
		"2026-11-22T24:00:00Z",
		"2026-02-30T09:00:00Z",
		"2025-02-29T09:00:00Z",
		"2026-11-22T09:00:00+24:00",
		"2026-11-22T09:00:00",
		"2026-11-22T09:00:00.Z",
		"9999-01-01T00:00:00Z",
		"",
	] {
		denied_with(object.union(exec_write, {"now": t}), {"input_incomplete"})
		denied_with(exec_write_plan({"expires_at": t}), {"input_incomplete"})
	}
}

test_valid_timestamp_forms_accepted if {
	every t in ["2026-11-22T09:00:00Z", "2026-11-22T09:00:00.5Z", "2026-11-22T11:00:00+02:00", "2028-02-29T09:00:00Z"] {
		d := decide(object.union(call("executor", "git", "git_status"), {"now": t}))
		d.allow == true
	}
}

test_plan_may_omit_step_index if {
	allowed(object.union(exec_write, {"plan": object.remove(approved_plan, ["step_index"])}))
}

test_annotations_absent_or_null_accepted if {
	i := call("executor", "git", "git_status")
	allowed(object.union(i, {"tool": object.remove(i.tool, ["annotations"])}))
	allowed(with_annotations(i, null))
	allowed(with_annotations(i, {}))
}

test_incomplete_input_has_no_other_reasons if {
	# A planner writing with a malformed `now`: only input_incomplete, no obligations.
	d := decide(object.union(call("planner", "git", "git_commit"), {"now": "soon", "session": {"locked": true}}))
	codes(d) == {"input_incomplete"}
	d.obligations == set()
}

test_input_problems_listed_precisely if {
	authz.input_problems == {"the input must be a JSON object"} with input as []
	authz.input_problems == set() with input as exec_write
	authz.input_problems == {"tool.annotations must be an object or null"} with input as with_annotations(exec_write, 3)
	authz.input_problems == {"tool must be an object with string server and name"} with input as object.union(exec_write, {"tool": "git"})
	authz.input_problems == {"now must be an RFC 3339 timestamp", "plan must be null or an object with id, state, planner, expires_at (RFC 3339), step_matches and step_index"} with input as object.remove(exec_write, ["now", "plan"])
	count(authz.input_problems) == 8 with input as {}
}

test_incomplete_message_names_problem if {
	d := decide(object.remove(exec_write, ["now"]))
	some r in d.reasons
	contains(r.message, "now must be an RFC 3339 timestamp")
}

# ---------------------------------------------------------------------------
# Shape of the decision
# ---------------------------------------------------------------------------

test_decision_has_exactly_three_keys if {
	every i in [{}, exec_write, call("auditor", "git", "git_status")] {
		object.keys(decide(i)) == {"allow", "reasons", "obligations"}
	}
}

test_every_reason_and_obligation_has_code_and_message if {
	inputs := [
		{},
		exec_write,
		object.union(exec_write, {"plan": null}),
		exec_write_plan({"planner": "exec-bot", "state": "pending", "step_matches": false}),
		exec_write_plan({"state": "expired"}),
		object.union(call("planner", "git", "git_commit"), {"session": {"locked": true}}),
		call("admin", "fs", "write_file"),
		call("auditor", "writ", "writ_plan_begin"),
	]
	every i in inputs {
		d := decide(i)
		every r in d.reasons {
			regex.match(`^[a-z]+(_[a-z]+)*$`, r.code)
			count(r.message) > 20
			object.keys(r) == {"code", "message"}
		}
		every o in d.obligations {
			regex.match(`^[a-z]+(_[a-z]+)*$`, o.code)
			count(o.message) > 20
		}
	}
}
