"""The Rego policies and policy data that ship with Writ (a package only so they install with it)."""
