// WebSocket over HTTP/2 (RFC 8441) between two Node peers, for captures/record_h2.py:
//   node h2_peers.js PORT MANIFEST                       h2c (cleartext, prior knowledge)
//   node h2_peers.js PORT MANIFEST CERT KEY KEYLOG       h2 over TLS (ALPN h2); the client's key log to KEYLOG
//   node h2_peers.js PORT MANIFEST CERT KEY browser      the server alone, serving a page whose script opens the
//                                                        WebSocket (a browser is the client); the manifest is what
//                                                        the server received and echoed
//
// Node's http2 module speaks the HTTP/2 side (the extended CONNECT, SETTINGS_ENABLE_CONNECT_PROTOCOL); no library
// here does WebSocket over HTTP/2, so the WebSocket frames (RFC 6455 5.2) are written and read by hand below: a test
// fixture, kept small. permessage-deflate (RFC 7692) is agreed with no context takeover on either side, so each
// compressed message is deflated alone with Node's zlib.
//
// One h2c connection (prior knowledge, no TLS): a plain GET on stream 1 (so HPACK's dynamic table is used across
// requests), the WebSocket on stream 3, a second extended CONNECT on stream 5 (answered, closed at once) while the
// first is open. What was sent and echoed goes to MANIFEST as JSON.
"use strict";
const http2 = require("node:http2");
const zlib = require("node:zlib");
const fs = require("node:fs");

const port = Number(process.argv[2]);
const manifestPath = process.argv[3];
const [certPath, keyPath, keylogPath] = process.argv.slice(4);
const tls = certPath !== undefined;
const browser = keylogPath === "browser";
// The browser's page: each message is sent when the echo of the one before arrives, then the close.
const PAGE = `<!doctype html><meta charset="utf-8"><title>RFC 8441</title><script>
const ws = new WebSocket("wss://" + location.host + "/chat", ["chat.v1"]);
ws.binaryType = "arraybuffer";
const messages = ["hello from Chromium over HTTP/2", new Uint8Array([...Array(32).keys()]).buffer, "UTF-8 ✓ 😀"];
let sent = 0;
ws.onopen = () => ws.send(messages[sent++]);
ws.onmessage = () => { if (sent < messages.length) ws.send(messages[sent++]); else ws.close(1000, "done"); };
</script>`;
const EXTENSIONS = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

// RFC 7692 7.2.1: deflate, then drop the 00 00 ff ff that ends a sync flush.
function compress(data) {
  const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

function decompress(data) {
  return zlib.inflateRawSync(Buffer.concat([data, Buffer.from([0, 0, 0xff, 0xff])]),
                             { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

// One frame (RFC 6455 5.2). A client masks (5.3) with a fixed key so the capture is reproducible.
function frame(opcode, payload, { fin = true, rsv1 = false, mask = null } = {}) {
  const head = [(fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode];
  const maskBit = mask ? 0x80 : 0;
  if (payload.length < 126) head.push(maskBit | payload.length);
  else head.push(maskBit | 126, payload.length >> 8, payload.length & 0xff);  // fixture: < 64 KiB
  let body = Buffer.from(payload);
  if (mask) {
    head.push(...mask);
    body = Buffer.from(body.map((byte, i) => byte ^ mask[i % 4]));
  }
  return Buffer.concat([Buffer.from(head), body]);
}

// Reads whole frames out of a byte stream, unmasking; calls onFrame(fin, rsv1, opcode, payload).
function frameReader(onFrame) {
  let buffer = Buffer.alloc(0);
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      let length = buffer[1] & 0x7f;
      let at = 2;
      if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); at = 4; }
      const masked = (buffer[1] & 0x80) !== 0;
      const mask = masked ? buffer.subarray(at, at + 4) : null;
      if (masked) at += 4;
      if (buffer.length < at + length) return;
      let payload = Buffer.from(buffer.subarray(at, at + length));
      if (mask) payload = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
      onFrame((buffer[0] & 0x80) !== 0, (buffer[0] & 0x40) !== 0, buffer[0] & 0x0f, payload);
      buffer = buffer.subarray(at + length);
    }
  };
}

function describe(opcode, data, compressed) {
  return opcode === 1 ? { opcode, text: data.toString("utf8"), compressed }
                      : { opcode, hex: data.toString("hex"), compressed };
}

const manifest = { port, h2_stream: 3, request: null, response: null, c2s: [], s2c: [], closes: {},
                   second_connect_stream: 5 };

const server = tls
  ? http2.createSecureServer({ cert: fs.readFileSync(certPath), key: fs.readFileSync(keyPath),
                               settings: { enableConnectProtocol: true } })
  : http2.createServer({ settings: { enableConnectProtocol: true } });
server.on("stream", (stream, headers) => {
  if (headers[":method"] !== "CONNECT") {
    stream.respond({ ":status": headers[":path"] === "/" || !browser ? 200 : 404,
                     "content-type": browser ? "text/html; charset=utf-8" : "text/plain" });
    stream.end(browser ? (headers[":path"] === "/" ? PAGE : "") : "plain HTTP/2 on the same connection\n");
    return;
  }
  if (browser) {
    manifest.request = headers;
    manifest.h2_stream = stream.id;
    delete manifest.second_connect_stream;  // the page opens one WebSocket
  }
  if (headers[":path"] !== "/chat") {  // the second WebSocket: accepted, then closed at once
    stream.respond({ ":status": 200 });
    stream.end(frame(8, Buffer.from([0x03, 0xe8])));
    return;
  }
  if (browser) manifest.response = { ":status": 200, "sec-websocket-protocol": "chat.v1",
                                     "sec-websocket-extensions": EXTENSIONS };
  stream.respond({ ":status": 200, "sec-websocket-protocol": "chat.v1", "sec-websocket-extensions": EXTENSIONS });
  let parts = [];
  let partsCompressed = false;
  let partsOpcode = 0;
  stream.on("data", frameReader((fin, rsv1, opcode, payload) => {
    if (opcode === 9) { stream.write(frame(10, payload)); manifest.s2c.push({ pong: payload.toString() }); return; }
    if (opcode === 8) {
      stream.end(frame(8, payload));
      manifest.closes.s2c = { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
      if (browser) {
        manifest.closes.c2s = manifest.closes.s2c;  // the echo of the browser's close
        fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 1) + "\n");
        setTimeout(() => process.exit(0), 500);
      }
      return;
    }
    if (opcode !== 0) { partsOpcode = opcode; partsCompressed = rsv1; parts = []; }
    parts.push(payload);
    if (!fin) return;
    let data = Buffer.concat(parts);
    if (partsCompressed) data = decompress(data);
    // The echo: compressed when the message came compressed.
    const echo = partsCompressed ? frame(partsOpcode, compress(data), { rsv1: true }) : frame(partsOpcode, data);
    stream.write(echo);
    manifest.s2c.push(describe(partsOpcode, data, partsCompressed));
    if (browser) manifest.c2s.push(describe(partsOpcode, data, partsCompressed));
  }));
});

server.listen(port, "127.0.0.1", () => {
  if (browser) return;
  const session = tls
    ? http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(certPath), servername: "wsinspect.test" })
    : http2.connect(`http://127.0.0.1:${port}`);
  // The NSS key log lines (what SSLKEYLOGFILE gives), as OpenSSL hands them to Node.
  if (tls) session.socket.on("keylog", (line) => fs.appendFileSync(keylogPath, line));
  session.on("remoteSettings", (settings) => {
    if (manifest.request) return;
    manifest.server_enable_connect_protocol = settings.enableConnectProtocol;
    const get = session.request({ ":path": "/", "user-agent": "wsinspect-h2-fixture" });
    get.on("data", () => {});
    get.on("end", () => openWebSocket(session));
    get.end();
  });
});

function openWebSocket(session) {
  const request = {
    ":method": "CONNECT", ":protocol": "websocket", ":scheme": tls ? "https" : "http", ":path": "/chat",
    ":authority": `${tls ? "wsinspect.test" : "127.0.0.1"}:${port}`, "sec-websocket-version": "13", "sec-websocket-protocol": "chat.v1, chat.v2",
    "sec-websocket-extensions": EXTENSIONS, origin: `http://127.0.0.1:${port}`, "user-agent": "wsinspect-h2-fixture",
  };
  manifest.request = request;
  const ws = session.request(request, { endStream: false });
  const mask = [0x37, 0xfa, 0x21, 0x3d];
  const script = [
    () => { ws.write(frame(1, Buffer.from("hello over HTTP/2"), { mask })); return describe(1, Buffer.from("hello over HTTP/2"), false); },
    () => {
      ws.write(frame(1, Buffer.from("frag"), { fin: false, mask }));
      ws.write(frame(0, Buffer.from("mented ✓"), { mask }));
      return describe(1, Buffer.from("fragmented ✓"), false);
    },
    () => { const data = Buffer.from([...Array(16).keys()]); ws.write(frame(2, data, { mask })); return describe(2, data, false); },
    () => { ws.write(frame(9, Buffer.from("ping over h2"), { mask })); return { ping: "ping over h2" }; },
    () => {
      const data = Buffer.from("compressed hello hello hello hello hello");
      ws.write(frame(1, compress(data), { rsv1: true, mask }));
      return describe(1, data, true);
    },
    () => {
      const data = Buffer.from("x".repeat(300));  // a 16-bit length, inflated
      ws.write(frame(1, compress(data), { rsv1: true, mask }));
      return describe(1, data, true);
    },
  ];
  let step = 0;
  let echoed = 0;
  let finishing = false;
  const next = () => {
    if (step < script.length) { manifest.c2s.push(script[step++]()); return; }
    if (finishing) return;
    finishing = true;
    // A second WebSocket on the same connection while the first is open, then the first one's close.
    const { "sec-websocket-extensions": _unused, ...plain } = request;
    const second = session.request({ ...plain, ":path": "/second" }, { endStream: false });
    second.on("data", () => {});
    second.on("close", () => {
      const close = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from("bye")]);
      ws.end(frame(8, close, { mask }));
      manifest.closes.c2s = { code: 1000, reason: "bye" };
    });
    second.end(frame(8, Buffer.from([0x03, 0xe8]), { mask }));
  };
  ws.on("response", (headers) => {
    manifest.response = Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith("date")));
    next();
  });
  ws.on("data", frameReader(() => { echoed += 1; next(); }));
  ws.on("close", () => {
    session.close(() => {
      server.close();
      manifest.echoed_frames = echoed;
      fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 1) + "\n");
    });
  });
}
