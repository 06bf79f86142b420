// Demo service 1: an mTLS server that proves its identity with its own X509-SVID and
// accepts only the greeter-client's SPIFFE ID. Its SVID comes from the agent through the
// Workload API (SPIFFE_ENDPOINT_SOCKET) and is swapped in on every rotation without a
// restart: new connections simply get the newest certificate.
//
//   SPIFFE_ENDPOINT_SOCKET=unix:///tmp/sigil/agent.sock MY_SPIFFE_ID=… PEER_SPIFFE_ID=… PORT=8443 \
//     node examples/demo/greeter-server.js
import { X509Source, authorizeId, createTlsServer, peerSpiffeId } from 'sigil/client';
import { shortSerial, stopOn } from './demo-support.js';

const { MY_SPIFFE_ID, PEER_SPIFFE_ID, PORT } = process.env;
if (!MY_SPIFFE_ID || !PEER_SPIFFE_ID || !PORT) throw new Error('set MY_SPIFFE_ID, PEER_SPIFFE_ID and PORT');

// This process matches several entries (the demo registers both services for one uid), so
// it picks its own identity by SPIFFE ID.
const source = await X509Source.create({ picker: { spiffeId: MY_SPIFFE_ID } });
let serial = source.svid.serial;
console.log(`got my X509-SVID ${source.svid.id} serial ${shortSerial(serial)}, valid until ${source.svid.notAfter.toISOString()}`);
source.on('update', () => {
  if (source.svid.serial === serial) return;
  serial = source.svid.serial;
  console.log(`rotated: my new X509-SVID serial ${shortSerial(serial)}, valid until ${source.svid.notAfter.toISOString()}`);
});

// One line for the first request and whenever the client shows up with a new certificate;
// the client prints every call.
let lastPeerSerial;
let requests = 0;
const server = createTlsServer({ source, authorizer: authorizeId(PEER_SPIFFE_ID) }, (socket) => {
  const peer = peerSpiffeId(socket);
  const peerSerial = socket.getPeerCertificate().serialNumber;
  requests++;
  if (peerSerial !== lastPeerSerial) {
    console.log(`mTLS request #${requests} from ${peer}, client serial ${shortSerial(peerSerial)}${lastPeerSerial === undefined ? '' : ' (new: it rotated)'}`);
    lastPeerSerial = peerSerial;
  }
  socket.end(`hello ${peer}, this is ${source.svid.id}\n`);
});
server.on('tlsClientError', (err) => console.log(`refused a client: ${err.code ?? err.message}`));
server.listen(Number(PORT), '127.0.0.1', () => console.log(`listening on 127.0.0.1:${PORT}, accepting only ${PEER_SPIFFE_ID}`));

stopOn(async () => {
  await new Promise((resolve) => server.close(resolve));
  await source.close();
});
