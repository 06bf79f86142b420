// A node:tls server that accepts only PEER_ID, over mutual TLS with its SPIFFE identity.
import { X509Source, authorizeId, createTlsServer, peerSpiffeId } from 'sigil/client';

const source = await X509Source.create(); // finds the agent through SPIFFE_ENDPOINT_SOCKET
source.on('update', () => console.log(`svid ${source.svid.id} serial ${source.svid.serial}`));

const server = createTlsServer({ source, authorizer: authorizeId(process.env.PEER_ID) }, (socket) => {
  socket.end(`hello ${peerSpiffeId(socket)} from ${source.svid.id}\n`);
});
server.on('tlsClientError', (err) => console.log(`refused ${err.code ?? err.message}`));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => source.close()));
