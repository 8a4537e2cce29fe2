// proxy.mjs — a TCP relay on a loopback port, in front of the server.
//
// The browser talks to the server through it, so a test can hold the page
// off the server for as long as it needs ("the network is down") while it
// restarts the server and sends messages the page must later catch up on.
// pause() refuses new connections (they are closed at once, as an
// unreachable server would) and, with {cut: true}, drops the open ones;
// resume(port) lets connections through again, to that port.
import net from 'node:net';

export async function startProxy(targetPort) {
  let target = targetPort;
  let paused = false;
  const open = new Set();

  const server = net.createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    const pair = { client, upstream };
    open.add(pair);
    const done = () => {
      client.destroy();
      upstream.destroy();
      open.delete(pair);
    };
    client.on('error', done);
    upstream.on('error', done);
    client.on('close', done);
    upstream.on('close', done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;

  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    get connections() {
      return open.size;
    },
    pause({ cut = false } = {}) {
      paused = true;
      if (cut) {
        for (const { client, upstream } of open) {
          client.destroy();
          upstream.destroy();
        }
        open.clear();
      }
    },
    resume(port = target) {
      target = port;
      paused = false;
    },
    close() {
      for (const { client, upstream } of open) {
        client.destroy();
        upstream.destroy();
      }
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
