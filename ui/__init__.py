"""The surfaces people and programs use, each thin over the façade ``agent.tagging``:
``app`` (the Gradio page, with ``logic`` and ``render`` as its plain-data halves), ``cli`` (the
``llm4tag`` command), ``rest`` (the FastAPI service) and ``mcp`` (the MCP server over stdio).
A surface parses its input, calls the façade and formats the output — nothing else."""
