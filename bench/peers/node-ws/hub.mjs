// A peer server for bench/: the bench subset of Switchboard's protocol on
// Node's `ws` package, written the way a Node developer would.
//
//   node hub.mjs PORT
//
// /echo  every message is sent back as received (same opcode).
// /ws    {"type":"join","room":R}            -> joins R, answers
//                                               {"type":"history","room":R,"messages":[]}
//        {"type":"message","room":R,"content":C} -> {"type":"message","room":R,"content":C}
//                                               to every member of R, the sender included.
// A closed connection leaves its rooms. Listens on 127.0.0.1 only.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.argv[2] || 9102);
const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('404 Not Found: use /echo or /ws\n');
});

// No compression: every peer and Switchboard run without permessage-deflate.
const echo = new WebSocketServer({ noServer: true, perMessageDeflate: false });
const hub = new WebSocketServer({ noServer: true, perMessageDeflate: false });

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  const wss = path === '/echo' ? echo : path === '/ws' ? hub : null;
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

const rooms = new Map(); // room name -> Set of sockets

hub.on('connection', (ws) => {
  const joined = new Set();
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (msg === null || typeof msg !== 'object' || typeof msg.room !== 'string') return;
    if (msg.type === 'join') {
      let members = rooms.get(msg.room);
      if (!members) rooms.set(msg.room, (members = new Set()));
      members.add(ws);
      joined.add(msg.room);
      ws.send(JSON.stringify({ type: 'history', room: msg.room, messages: [] }));
    } else if (msg.type === 'message' && typeof msg.content === 'string') {
      const members = rooms.get(msg.room);
      if (!members || !members.has(ws)) return;
      // Serialize once; every member gets the same Buffer as a text frame.
      const out = Buffer.from(JSON.stringify({ type: 'message', room: msg.room, content: msg.content }));
      for (const m of members) m.send(out, { binary: false });
    }
  });
  ws.on('close', () => {
    for (const room of joined) {
      const members = rooms.get(room);
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    }
  });
});

// The same accept backlog as Switchboard's (1024).
server.listen(port, '127.0.0.1', 1024, () => {
  console.log(`node-ws peer listening on 127.0.0.1:${port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
