"""``writ demo``: the whole story end to end with real upstream MCP servers, narrated (``story``)."""
