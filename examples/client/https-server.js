// An https server that serves only PEER_ID, with SPIFFE mutual TLS.
import { X509Source, authorizeId, createHttpsServer, peerSpiffeId } from 'sigil/client';

const source = await X509Source.create();
source.on('update', () => console.log(`svid ${source.svid.id} serial ${source.svid.serial}`));

const server = createHttpsServer({ source, authorizer: authorizeId(process.env.PEER_ID) }, (req, res) => {
  res.end(`hello ${peerSpiffeId(req.socket)} from ${source.svid.id}\n`);
});
server.on('tlsClientError', (err) => console.log(`refused ${err.code ?? err.message}`));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => source.close()));
