# An example of a security team's own rule, as docs/policies.md shows it: loaded only by
# `writ policy test` (a *_test.rego file), and tested in authz_test.rego
# (test_team_rule_*). In a team's policy repository it would be an ordinary module.
package writ.authz

deny contains reason("resource_read_forbidden", "resources of the vault server may not be read through Writ") if {
	method == "resources/read"
	input.tool.server == "vault"
}
