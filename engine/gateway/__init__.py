"""The MCP gateway: Writ in front of upstream MCP servers, deciding every request by policy.

    $ writ mcp --principal exec-bot --config writ.toml      # stdio, for Claude Desktop / Code
    $ writ serve --config writ.toml                         # streamable HTTP at /mcp, bearer tokens

Modules:

- ``config``: ``writ.toml`` (upstreams, timeouts) -> ``GatewayConfig``; ``GatewayConfigError`` names the
  file and the key. Principals and roles live in the trust store (``governance.resolve_principal``).
- ``upstream``: one supervised client session per upstream, its tools and their definition digests
  (``definition_digest``), ``UpstreamUnavailable`` / ``UpstreamTimeout``.
- ``server``: the MCP server (``Gateway``, one per agent session): tools as ``<server>__<tool>``,
  decided, forwarded (a write only as a claimed plan step) and audited; prompts, resources,
  completions and logging passed through the same way.
- ``passthrough``: names of prompts and resources (``writ://<server>/<uri>``), and which agent session
  an upstream's own requests and notifications go to (``Router``).
- ``governance``: Writ's plan tools (``writ__writ_plan_*``); ``http``: the HTTP transport and its
  tokens (``tokens``); ``exposure``: the check that no upstream can reach the data directory.
"""
