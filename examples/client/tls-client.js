// Connects to the tls-server example, accepting only a server whose SPIFFE ID is PEER_ID.
import { X509Source, authorizeId, connectTls } from 'sigil/client';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
try {
  const socket = await connectTls({ source, authorizer: authorizeId(process.env.PEER_ID), port: Number(process.env.PORT) });
  console.log(`server serial ${socket.getPeerX509Certificate().serialNumber}`);
  let reply = '';
  for await (const chunk of socket) reply += chunk;
  // With TLS 1.3 a server that refuses our SVID can only close the connection.
  if (reply === '') throw new Error('closed by the server');
  process.stdout.write(reply);
} catch (err) {
  console.log(`failed ${err.code ?? err.message}`);
  process.exitCode = 1;
} finally {
  await source.close();
}
