#!/usr/bin/env node
// Starts @modelcontextprotocol/server-everything (the MCP reference server,
// installed in ./node_modules by `cargo xtask setup`) on a chosen address.
//
//   node tests/peers/server_everything.mjs streamableHttp|sse [--host H] [--port P]
//
// Upstream only reads PORT (default 3001) and calls express's
// `app.listen(PORT)`, which binds every interface. This launcher makes the
// bind address a parameter (default 127.0.0.1) by handing it to the one
// `listen(port, cb)` call the server makes, then imports the transport's
// module exactly as upstream's own `dist/index.js <transport>` does.
//
// Once the socket is bound it prints one line to stderr:
//   server-everything ready: http://HOST:PORT/mcp   (or /sse)
// (with --port 0 the kernel picks the port and this line tells which). If the
// bind fails it exits 1.
//
// The server's environment is emptied before it starts (all but GZIP_* and
// whatever --keep-env names; PORT is removed once read), so its `get-env`
// tool answers `{}` on every machine and port and never shows the caller's
// variables.

import net from "node:net";

const TRANSPORTS = {
  streamableHttp: { module: "streamableHttp.js", path: "/mcp" },
  sse: { module: "sse.js", path: "/sse" },
};

function usage(message) {
  if (message) console.error(`server_everything.mjs: ${message}`);
  console.error(
    "usage: node server_everything.mjs streamableHttp|sse [--host 127.0.0.1] [--port 3001] [--keep-env VAR,...]",
  );
  process.exit(2);
}

const args = process.argv.slice(2);
const transport = TRANSPORTS[args[0]];
if (!transport) usage(args[0] ? `unknown transport ${args[0]}` : "no transport given");
let host = "127.0.0.1";
let port = process.env.PORT ?? "3001";
let keep = [];
for (let i = 1; i < args.length; i += 2) {
  const value = args[i + 1];
  if (value === undefined) usage(`${args[i]} needs a value`);
  if (args[i] === "--host") host = value;
  else if (args[i] === "--port") port = value;
  else if (args[i] === "--keep-env") keep = value.split(",").filter(Boolean);
  else usage(`unknown option ${args[i]}`);
}
if (!/^\d+$/.test(port) || Number(port) > 65535) usage(`bad port ${port}`);

for (const name of Object.keys(process.env)) {
  if (!name.startsWith("GZIP_") && !keep.includes(name)) delete process.env[name];
}
process.env.PORT = port;

// express: app.listen(PORT, cb) -> http.Server#listen(PORT, cb). Insert the
// host; a call that already names one is left alone.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...listenArgs) {
  const [first, second] = listenArgs;
  if (
    (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) &&
    typeof second !== "string"
  ) {
    listenArgs.splice(1, 0, host);
    // Upstream's sse.js has no error handler, and express 5 hands a bind
    // error to the listen callback, which logs "running" and lets the process
    // exit 0: fail loudly instead.
    this.once("error", (err) => {
      console.error(`server-everything failed to listen on ${host}:${first}: ${err.message}`);
      process.exit(1);
    });
    this.once("listening", () => {
      const { address, port: bound } = this.address();
      const shown = address.includes(":") ? `[${address}]` : address;
      console.error(`server-everything ready: http://${shown}:${bound}${transport.path}`);
    });
  }
  return listen.apply(this, listenArgs);
};

await import(
  new URL(
    `./node_modules/@modelcontextprotocol/server-everything/dist/transports/${transport.module}`,
    import.meta.url,
  )
);
// Read once, at import; gone so that get-env does not depend on the port.
delete process.env.PORT;
