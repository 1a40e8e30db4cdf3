// A keep-alive HTTP/1.1 server (Node's own http module) that also takes a WebSocket upgrade on a connection that
// already carried requests, as servers built on the `ws` package do: Node parses the requests, its 'upgrade' event
// hands over the socket, and the 101 and the frames are written by hand (RFC 6455). Used by
// captures/record_keepalive.py; prints "listening" once it is.
"use strict";
const http = require("http");
const crypto = require("crypto");

const port = Number(process.argv[2]);
const PAGE = "<!doctype html><title>keep-alive</title><p>the page before the WebSocket</p>\n";

const server = http.createServer((request, response) => {
  if (request.url === "/") {
    response.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Content-Length": Buffer.byteLength(PAGE) });
    response.end(PAGE);
  } else if (request.url === "/app.js") {
    // No Content-Length: Node sends the body in chunked transfer coding, two chunks.
    response.writeHead(200, { "Content-Type": "text/javascript" });
    response.write("const socket = ");
    setTimeout(() => response.end("new WebSocket('/ws');\n"), 20);
  } else {
    response.writeHead(404, { "Content-Length": 0 });
    response.end();
  }
});

function frame(opcode, payload) {
  const length = payload.length;
  const head = length < 126 ? Buffer.from([0x80 | opcode, length]) : Buffer.from([0x80 | opcode, 126, length >> 8, length & 255]);
  return Buffer.concat([head, payload]);
}

server.on("upgrade", (request, socket, head) => {
  const accept = crypto.createHash("sha1")
    .update(request.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
               `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buffer = head;
  socket.on("data", (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      let length = buffer[1] & 127, offset = 2;
      if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); offset = 4; }
      if (buffer.length < offset + 4 + length) return;
      const mask = buffer.subarray(offset, offset + 4);
      const payload = Buffer.from(buffer.subarray(offset + 4, offset + 4 + length));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      const opcode = buffer[0] & 15;
      buffer = buffer.subarray(offset + 4 + length);
      if (opcode === 1 || opcode === 2) {
        socket.write(frame(opcode, payload));  // echoed
      } else if (opcode === 8) {
        socket.end(frame(8, payload));  // the close answered with the same code and reason, then FIN
        server.close();
        return;
      }
    }
  });
});

server.listen(port, "127.0.0.1", () => console.log("listening"));
