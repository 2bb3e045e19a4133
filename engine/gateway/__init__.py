"""The MCP gateway: Writ in front of upstream MCP servers, deciding every request by policy.

    $ writ mcp --principal exec-bot --config writ.toml      # stdio, for Claude Desktop / Code
    $ writ serve --config writ.toml                         # streamable HTTP at /mcp, bearer tokens

Modules, entry points first:

- ``server``: ``Gateway``, one per agent session (its principal, session lock and bound plan):
  lists tools as ``<server>__<tool>``, builds and decides the policy input of every request;
  ``build_server`` routes MCP requests to it.
- ``http``: ``HttpGateway``, the streamable HTTP transport (one ``Gateway`` per MCP session,
  upstreams shared); ``tokens``: ``TokenStore``, its bearer tokens.
- ``config``: ``writ.toml`` (upstreams, timeouts) -> ``GatewayConfig`` (``load_config``);
  ``GatewayConfigError`` names the file and the key. ``exposure``: ``load_safe_config``, which
  refuses an upstream that could read the data directory.
- ``calls``: ``ToolCalls``, the life of one ``tools/call``: decide, tie to a plan step and
  claim it, forward, record.
- ``passthrough``: ``PassThrough``, every other request (resources, prompts, completions,
  logging) and what upstreams ask of the agent (sampling, elicitation), decided the same way.
- ``governance``: ``Governance``, the handlers of Writ's plan tools (``writ__writ_plan_*``), and
  ``resolve_principal`` (who a session acts for, from the trust store); ``plan_tools``: their
  definitions and argument models; ``steps``: which step of the bound plan a call is
  (``choose_step``, ``real_path_check``).
- ``upstream``: ``UpstreamManager`` and ``Upstream``, one supervised client session per
  upstream (``UpstreamUnavailable`` / ``UpstreamTimeout``); ``listing``: ``UpstreamTool`` and
  ``definition_digest``, what a plan step pins.
- ``routing``: ``Router``, which agent session an upstream's own messages belong to (ADR 0011);
  ``names``: ``writ://<server>/<uri>`` and ``<server>__<name>``.
- ``results``: denials, errors and the decision in ``_meta`` as the agent sees them; result digests.
- ``sessions``: ``PrincipalGuard``, the principal lock every session checks before a call, and the
  sessions ``writ sessions list`` shows; ``origins``: the Origin and bearer-token rules of HTTP;
  ``stdio``: the stdio transport, which answers every line it cannot read (-32700 / -32600).
"""
