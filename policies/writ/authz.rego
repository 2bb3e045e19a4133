# Writ: may this principal make this tool call (or other MCP request) now?
#
# Entry point: data.writ.authz.decision, always defined:
#   {"allow": bool, "reasons": [{"code", "message"}], "obligations": [{"code", "message"}]}
# `reasons` and `obligations` are sets of objects (serialized as arrays sorted by code,
# then message). Reason and obligation codes are a stable API.
#
# Input (built and validated by the gateway):
#   principal, role, groups, session {id, locked}, method (absent or null: "tools/call"),
#   tool {server, name, definition_digest, annotations, annotations_trusted}, args, plan
#   (null or {id, state, planner, expires_at, step_matches, step_index}), now.
# tool.annotations_trusted is the operator's word on this exact upstream (trust_annotations on
# its writ.toml entry), set by the gateway: an upstream cannot choose it (ADR 0013).
# For a method other than tools/call, tool.name is the resource URI, prompt name or method
# (see docs/policies.md) and the request is a read.
# Data: data.writ.tools (tool classification), data.writ.config (lock_session_on).
#
# Runs unchanged on regorus and on OPA: no string interpolation, no rego.metadata, and
# every builtin that could raise on a malformed value (time parsing, regex, count) is
# called only after the value's type and format were checked.
package writ.authz

import data.writ.lib

roles := {"planner", "executor", "approver", "auditor", "admin"}

plan_states := {"proposed", "pending", "approved", "rejected", "expired", "executing", "completed", "failed", "aborted"}

# Classes a role may use, for every class but "write" (writes have rules of their own).
class_roles := {
	"read": {"planner", "executor"},
	"plan": {"planner"},
	"execute": {"executor"},
	"status": {"planner", "executor"},
}

# Writ's governance classes are honoured only for tools of the "writ" server.
governance_classes := {"plan", "execute", "status"}

executable_plan_states := {"approved", "executing"}

# The MCP requests the gateway asks about. Every one but tools/call is a read.
methods := {"tools/call", "resources/read", "resources/subscribe", "prompts/get", "completion/complete", "sampling/createMessage", "elicitation/create"}

non_tool_methods := methods - {"tools/call"}

non_writer_roles := {"approver", "auditor", "admin"}

# ---------------------------------------------------------------------------
# Input validation: anything malformed is denied with "input_incomplete".
# ---------------------------------------------------------------------------

# NOTE: never write `not f(ref)` or `not ref in coll` with a ref that may be undefined:
# OPA hoists the ref out of the negation (the rule becomes undefined), regorus does not
# (the negation holds). Positive helper rules below keep both engines in agreement.
input_problems contains "the input must be a JSON object" if not input_is_object

input_is_object if is_object(input)

input_problems contains "principal must be a non-empty string" if {
	input_is_object
	not principal_ok
}

principal_ok if lib.non_empty_string(input.principal)

input_problems contains "role must be one of planner, executor, approver, auditor, admin" if {
	input_is_object
	not role_ok
}

role_ok if input.role in roles

input_problems contains "groups must be a list of strings" if {
	input_is_object
	not groups_ok
}

groups_ok if lib.string_list(input.groups)

input_problems contains "session must be an object with a boolean locked" if {
	input_is_object
	not session_ok
}

session_ok if is_boolean(input.session.locked)

input_problems contains "tool must be an object with string server and name" if {
	input_is_object
	not valid_tool
}

input_problems contains "tool.annotations must be an object or null" if {
	input_is_object
	is_object(input.tool)
	not valid_annotations
}

input_problems contains "tool.annotations_trusted must be a boolean when present" if {
	input_is_object
	is_object(input.tool)
	not annotations_trust_ok
}

input_problems contains "args must be an object" if {
	input_is_object
	not args_ok
}

args_ok if is_object(input.args)

input_problems contains "method must be one of tools/call, resources/read, resources/subscribe, prompts/get, completion/complete, sampling/createMessage, elicitation/create" if {
	input_is_object
	not method_ok
}

method_ok if method in methods

input_problems contains "a method other than tools/call may not name the writ server: Writ's governance server has no resources, prompts or completions" if {
	non_tool_method
	input.tool.server == "writ"
}

# The method asked about: "tools/call" when absent or null (callers older than the field
# send none). Always defined, so `not method_ok` is safe on both engines.
default method := "tools/call"

method := input.method if input.method != null

tool_call if method == "tools/call"

non_tool_method if method in non_tool_methods

input_problems contains "plan must be null or an object with id, state, planner, expires_at (RFC 3339), step_matches and step_index" if {
	input_is_object
	not valid_plan
}

input_problems contains "now must be an RFC 3339 timestamp" if {
	input_is_object
	not now_ok
}

now_ok if is_number(now_ns)

# Parsed once per decision (the format check costs a regex match on regorus).
now_ns := lib.time_ns(input.now)

plan_expires_ns := lib.time_ns(input.plan.expires_at)

valid_tool if {
	lib.non_empty_string(input.tool.server)
	lib.non_empty_string(input.tool.name)
}

# Absent or null annotations mean no hints.
valid_annotations if {
	is_object(input.tool)
	object.get(input.tool, "annotations", null) == null
}

valid_annotations if is_object(input.tool.annotations)

# Absent means false (callers older than the field send none).
annotations_trust_ok if {
	is_object(input.tool)
	is_boolean(object.get(input.tool, "annotations_trusted", false))
}

valid_plan if input.plan == null

valid_plan if {
	p := input.plan
	is_object(p)
	is_string(p.id)
	p.state in plan_states
	lib.non_empty_string(p.planner)
	is_number(plan_expires_ns)
	is_boolean(p.step_matches)
	valid_step_index(object.get(p, "step_index", null))
}

valid_step_index(i) if i == null

valid_step_index(i) if is_number(i)

default valid_input := false

valid_input if count(input_problems) == 0

# ---------------------------------------------------------------------------
# Tool classification: "read", "write", or (server "writ") "plan", "execute", "status".
# Only tools/call is classified by data and hints; every other method is a read.
# ---------------------------------------------------------------------------

server_data := data.writ.tools.servers[input.tool.server]

# The classification in data, when it names a class that applies to this server.
data_class := c if {
	c := server_data.tools[input.tool.name]
	c in {"read", "write"}
}

data_class := c if {
	c := server_data.tools[input.tool.name]
	c in governance_classes
	input.tool.server == "writ"
}

# Annotations are hints from the server: used only when the operator trusts this exact
# upstream's (input.tool.annotations_trusted, from its writ.toml entry), never by its name, and
# never for Writ's own server. An upstream that names itself after a server policy data knows
# gains nothing: a tool policy data does not classify is a write.
hinted_read if {
	input.tool.annotations_trusted == true
	input.tool.server != "writ"
	is_object(input.tool.annotations)
	input.tool.annotations.readOnlyHint == true
	not input.tool.annotations.destructiveHint == true
}

# The definitions never disagree: each one but the last needs tool_call, the last needs
# non_tool_method (method has one value, so at most one of the two holds), and the two
# tools/call ones are apart by data_entry_exists (which data_class alone is not: an array
# of classes in data and a number for a name). A malformed method gets the default.
default class := "write"

class := data_class if {
	tool_call
	data_entry_exists
}

class := "read" if {
	tool_call
	not data_entry_exists
	hinted_read
}

class := "read" if non_tool_method

# An entry in data decides, even one naming a class that does not apply here (then: write).
data_entry_exists if {
	is_object(server_data.tools)
	input.tool.name in object.keys(server_data.tools)
}

# ---------------------------------------------------------------------------
# Deny reasons
# ---------------------------------------------------------------------------

deny contains reason("session_locked", "this session is locked after a policy violation: stop making tool calls and ask a human operator to review the session") if {
	input.session.locked == true
}

deny contains reason("role_not_permitted", role_message(input.role, role_subject)) if {
	class != "write"
	is_string(input.role)
	not role_may_use_class
}

role_may_use_class if input.role in class_roles[class]

# What the role_not_permitted message speaks of: the class of a tool, or the method.
role_subject := class if tool_call

role_subject := method if non_tool_method

role_message(role, "read") := concat("", ["the ", role, " role may not call read tools: only planners and executors may read"])

role_message(role, m) := concat("", ["the ", role, " role may not ", method_actions[m], " (", m, "): only planners and executors may"]) if m in non_tool_methods

role_message(role, "plan") := concat("", ["the ", role, " role may not propose plans: only a planner may call writ_plan_propose"])

role_message(role, "execute") := concat("", ["the ", role, " role may not begin or finish plan execution: only an executor may call writ_plan_begin and writ_plan_finish"])

role_message(role, "status") := concat("", ["the ", role, " role may not query plan status: only planners and executors may call writ_plan_status"])

# What a role may not do, for each method other than tools/call (in role_message).
method_actions := {
	"resources/read": "read resources",
	"resources/subscribe": "subscribe to resources",
	"prompts/get": "get prompts",
	"completion/complete": "ask for argument completions",
	"sampling/createMessage": "be asked by a server to sample a message",
	"elicitation/create": "be asked by a server for input",
}

deny contains reason("planner_cannot_write", "planners may not change anything: describe the change as a plan with writ_plan_propose; an executor will carry it out once approvers approve it") if {
	class == "write"
	input.role == "planner"
}

deny contains reason("role_cannot_write", concat("", ["the ", input.role, " role may not call tools that change state: only an executor running an approved plan may"])) if {
	class == "write"
	input.role in non_writer_roles
}

deny contains reason("plan_required", "executors may write only as a step of an approved plan: have a planner propose it with writ_plan_propose, wait for approval, then start it with writ_plan_begin") if {
	executor_write
	input.plan == null
}

deny contains reason("self_execution", "this plan was proposed by you: a plan must be executed by a different principal than its planner, so hand it to another executor") if {
	executor_write
	is_object(input.plan)
	input.plan.planner == input.principal
}

deny contains reason("plan_expired", "the plan has expired: propose a new plan with writ_plan_propose and have it approved again") if {
	executor_write
	plan_expired
}

deny contains reason("plan_not_approved", concat("", ["the plan is ", input.plan.state, ", not approved: ", plan_state_advice(input.plan.state)])) if {
	executor_write
	is_object(input.plan)
	is_string(input.plan.state)
	not plan_expired
	not plan_executable
}

plan_executable if input.plan.state in executable_plan_states

plan_state_advice(state) := "wait until the approvers approve it (check with writ_plan_status) before running any of its steps" if state in {"proposed", "pending"}

plan_state_advice(state) := "it can no longer run, so propose a new plan with writ_plan_propose" if not state in {"proposed", "pending"}

deny contains reason("step_not_in_plan", "this call does not match a step of the plan (tool and arguments must match exactly): run only the approved steps, or propose a new plan for this change") if {
	executor_write
	is_object(input.plan)
	input.plan.step_matches != true
}

executor_write if {
	class == "write"
	input.role == "executor"
}

plan_expired if input.plan.state == "expired"

plan_expired if now_ns >= plan_expires_ns

deny_codes := {r.code | some r in deny}

# ---------------------------------------------------------------------------
# Permit rules (any one suffices when there is no deny reason)
# ---------------------------------------------------------------------------

permit if {
	class != "write"
	role_may_use_class
}

permit if {
	executor_write
	is_object(input.plan)
}

# ---------------------------------------------------------------------------
# Obligations
# ---------------------------------------------------------------------------

# Only tools/call can be a write (every other method is a read): no plan_required for them.
obligations contains reason("plan_required", "this tool changes state: it may run only as a step of an approved plan, and its execution must be recorded against that step") if {
	valid_input
	class == "write"
}

obligations contains reason("lock_session", concat("", ["lock this session: the violation (", concat(", ", sort(lock_codes)), ") means no further calls may be made in it until an operator reviews it"])) if {
	count(lock_codes) > 0
}

lock_codes := {c |
	valid_input
	some c in deny_codes
	c in data.writ.config.lock_session_on
}

# ---------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------

reasons contains r if {
	valid_input
	some r in deny
}

reasons contains reason("not_permitted", "no policy rule permits this call, so it is denied by default: use a tool your role may call") if {
	valid_input
	count(deny) == 0
	not permit
}

reasons contains reason("input_incomplete", concat("", ["the gateway sent an incomplete or malformed request (", concat("; ", sort(input_problems)), "), so the call was denied: retrying will not help, report it to the Writ operator"])) if {
	not valid_input
}

default allow := false

allow if {
	valid_input
	count(deny) == 0
	permit
}

decision := {"allow": allow, "reasons": reasons, "obligations": obligations}

reason(code, message) := {"code": code, "message": message}
