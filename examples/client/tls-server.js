// A node:tls server that accepts only PEER_ID, over mutual TLS with its SPIFFE identity.
import { X509Source, authorizeId, createTlsServer, peerSpiffeId } from 'sigil/client';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
const announce = () => console.log(`svid ${source.svid.id} serial ${source.svid.serial}`);
announce(); // the SVID in use now, then each one a rotation brings
source.on('update', announce);

const server = createTlsServer({ source, authorizer: authorizeId(process.env.PEER_ID) }, (socket) => {
  socket.end(`hello ${peerSpiffeId(socket)} from ${source.svid.id}\n`);
});
server.on('tlsClientError', (err) => console.log(`refused ${err.code ?? err.message}`));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => source.close()));
