"""The official MCP Python SDK as a client of `sintra mcp` (issue #19): lists the tools and calls
them against the real server, printing what it saw as one JSON object for the Rust test."""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

SINTRA, MODEL, OUT_DIR = sys.argv[1], sys.argv[2], sys.argv[3]


async def main():
    params = StdioServerParameters(command=SINTRA, args=["mcp"], env=dict(os.environ))
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            seen["server"] = init.serverInfo.name
            seen["protocol"] = init.protocolVersion
            tools = await s.list_tools()
            seen["tools"] = {t.name: t.inputSchema for t in tools.tools}

            res = await s.call_tool("inspect", {"model": MODEL})
            seen["inspect"] = {"error": res.isError, "json": json.loads(res.content[0].text)}

            async def collect(into):
                async def on_progress(progress, total, message):
                    into.append({"progress": progress, "total": total, "message": message})
                return on_progress

            progress = []
            res = await s.call_tool(
                "bench",
                {"model": MODEL, "n_prompt": 16, "n_gen": 8, "repetitions": 2, "threads": 1},
                progress_callback=await collect(progress),
            )
            seen["bench"] = {
                "error": res.isError,
                "json": json.loads(res.content[0].text) if not res.isError else res.content[0].text,
                "progress": progress,
            }

            res = await s.call_tool("bench", {"model": "/nonexistent/model.gguf"})
            seen["missing"] = {"error": res.isError, "text": res.content[0].text}

            try:
                await s.call_tool("bench", {"model": MODEL, "n_gen": -3})
                seen["bad_arguments"] = "accepted"
            except Exception as e:  # the server's JSON-RPC error
                seen["bad_arguments"] = str(e)

            progress = []
            res = await s.call_tool(
                "optimize",
                {"mock": True, "max_iters": 2, "output_dir": OUT_DIR},
                progress_callback=await collect(progress),
            )
            seen["optimize"] = {"error": res.isError, "text": res.content[0].text, "progress": progress}

            res = await s.call_tool("history", {})
            seen["history"] = {"error": res.isError, "text": res.content[0].text}
    print(json.dumps(seen))


asyncio.run(main())
