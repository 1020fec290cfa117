#!/usr/bin/env node
// server-everything (see server_everything.mjs) with its tools/list,
// resources/list and prompts/list answers paged, `--page-size` items a page:
//
//   node tests/peers/paged_everything.mjs --page-size N streamableHttp|sse [--host H] [--port P]
//
// The reference server answers every list in one page, so a proxy that
// filters lists could drop `nextCursor` and no test would notice. This
// launcher wraps the SDK's request handlers for the three list methods:
// the server's own answer is cut into pages, each with an opaque cursor
// (base64url of "page:<offset>") for the next one, as the spec's
// pagination describes; an unknown cursor is -32602 (Invalid params).
// Everything else is server_everything.mjs unchanged, which it then runs
// with the remaining arguments.

import { Protocol } from "@modelcontextprotocol/sdk/shared/protocol.js";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";

const LISTS = { "tools/list": "tools", "resources/list": "resources", "prompts/list": "prompts" };

const at = process.argv.indexOf("--page-size");
const size = at === -1 ? NaN : Number(process.argv[at + 1]);
if (!Number.isInteger(size) || size < 1) {
  console.error("paged_everything.mjs: --page-size N (N >= 1) is required");
  process.exit(2);
}
process.argv.splice(at, 2);

const encode = (offset) => Buffer.from(`page:${offset}`).toString("base64url");
function decode(cursor) {
  if (cursor === undefined) return 0;
  const m = /^page:(\d+)$/.exec(Buffer.from(String(cursor), "base64url").toString());
  if (!m) throw new McpError(ErrorCode.InvalidParams, `unknown cursor ${JSON.stringify(cursor)}`);
  return Number(m[1]);
}

const setRequestHandler = Protocol.prototype.setRequestHandler;
Protocol.prototype.setRequestHandler = function (schema, handler) {
  return setRequestHandler.call(this, schema, async (request, extra) => {
    const key = LISTS[request.method];
    if (!key) return handler(request, extra);
    const start = decode(request.params?.cursor);
    const whole = await handler(request, extra);
    const items = whole[key] ?? [];
    const page = { ...whole, [key]: items.slice(start, start + size) };
    delete page.nextCursor;
    if (start + size < items.length) page.nextCursor = encode(start + size);
    return page;
  });
};

await import("./server_everything.mjs");
