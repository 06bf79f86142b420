/* global AbortController */
// Demo service 2: calls the greeter-server over mTLS every few seconds, checks that the
// server is exactly the greeter-server's SPIFFE ID, and prints what it saw. Both sides'
// serial numbers change as the agent rotates the SVIDs (the demo uses 2-minute SVIDs).
//
//   SPIFFE_ENDPOINT_SOCKET=unix:///tmp/sigil/agent.sock MY_SPIFFE_ID=… PEER_SPIFFE_ID=… PORT=8443 \
//     node examples/demo/greeter-client.js
import { setTimeout as sleep } from 'node:timers/promises';
import { X509Source, authorizeId, connectTls, peerSpiffeId } from 'sigil/client';
import { shortSerial, stopOn } from './demo-support.js';

const { MY_SPIFFE_ID, PEER_SPIFFE_ID, PORT } = process.env;
const intervalMs = Number(process.env.INTERVAL_MS ?? 3000);
if (!MY_SPIFFE_ID || !PEER_SPIFFE_ID || !PORT) throw new Error('set MY_SPIFFE_ID, PEER_SPIFFE_ID and PORT');

const source = await X509Source.create({ picker: { spiffeId: MY_SPIFFE_ID } });
let serial = source.svid.serial;
console.log(`got my X509-SVID ${source.svid.id} serial ${shortSerial(serial)}, valid until ${source.svid.notAfter.toISOString()}`);
source.on('update', () => {
  if (source.svid.serial === serial) return;
  serial = source.svid.serial;
  console.log(`rotated: my new X509-SVID serial ${shortSerial(serial)}, valid until ${source.svid.notAfter.toISOString()}`);
});

const stopping = new AbortController();

async function callOnce() {
  const socket = await connectTls({ source, authorizer: authorizeId(PEER_SPIFFE_ID), host: '127.0.0.1', port: Number(PORT) }, stopping.signal);
  try {
    const peer = peerSpiffeId(socket);
    const peerSerial = socket.getPeerCertificate().serialNumber;
    let reply = '';
    for await (const chunk of socket) reply += chunk;
    if (!reply.startsWith('hello ')) throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
    console.log(`mTLS ok: server ${peer} serial ${shortSerial(peerSerial)}, me serial ${shortSerial(source.svid.serial)}`);
  } finally {
    socket.destroy();
  }
}

async function loop() {
  while (!stopping.signal.aborted) {
    try {
      await callOnce();
    } catch (err) {
      if (stopping.signal.aborted) break;
      console.log(`call failed: ${err.code ?? ''} ${err.message}`);
    }
    // timers/promises removes its abort listener when the timer fires: a listener added by
    // hand on every call would pile up on the one signal (MaxListenersExceededWarning)
    await sleep(intervalMs, undefined, { signal: stopping.signal }).catch(() => {});
  }
}

const running = loop();
stopOn(async () => {
  stopping.abort();
  await running;
  await source.close();
});
