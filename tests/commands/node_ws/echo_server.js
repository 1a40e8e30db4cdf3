// An echo server on Node's `ws` for tests/commands/test_connect.py: listens on 127.0.0.1, a port the kernel picks,
// prints "listening PORT" once ready, and sends every message back as it came (text as text, binary as binary).
// argv[2] is "deflate" to accept permessage-deflate for every message (threshold 0), anything else to refuse it.
"use strict";
const { WebSocketServer } = require("ws");

const deflate = process.argv[2] === "deflate" ? { threshold: 0 } : false;
const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: deflate });
server.on("listening", () => console.log(`listening ${server.address().port}`));
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
// The test closes stdin to stop the server: no process is left behind if the test dies.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
