"""The MCP gateway: Writ in front of upstream MCP servers, deciding every tool call by policy.

    $ writ mcp --principal plan-bot --config writ.toml      # stdio MCP server for Claude Desktop / Code

    from writ.engine.gateway.config import load_config, resolve_principal
    from writ.engine.gateway.server import Gateway
    gateway = Gateway(DecisionPoint.from_settings(settings), config, resolve_principal(config, "plan-bot"))
    anyio.run(gateway.serve_stdio)

Modules:

- ``config``: ``writ.toml`` (upstreams, timeouts, principals) -> ``GatewayConfig``; ``GatewayConfigError``
  names the file and the key.
- ``upstream``: one supervised client session per upstream, its tools and their definition digests
  (``definition_digest``), ``UpstreamUnavailable`` / ``UpstreamTimeout``.
- ``server``: the MCP server (``Gateway``): ``tools/list`` namespaced as ``<server>__<tool>``,
  ``tools/call`` decided, forwarded, and audited.
"""
