// An https server that serves only PEER_ID, with SPIFFE mutual TLS.
import { X509Source, authorizeId, createHttpsServer, peerSpiffeId } from 'sigil/client';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
const announce = () => console.log(`svid ${source.svid.id} serial ${source.svid.serial}`);
announce(); // the SVID in use now, then each one a rotation brings
source.on('update', announce);

const server = createHttpsServer({ source, authorizer: authorizeId(process.env.PEER_ID) }, (req, res) => {
  res.end(`hello ${peerSpiffeId(req.socket)} from ${source.svid.id}\n`);
});
server.on('tlsClientError', (err) => console.log(`refused ${err.code ?? err.message}`));
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`));
process.on('SIGTERM', () => server.close(() => source.close()));
