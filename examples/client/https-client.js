// Calls the https-server example through an agent that presents our SVID and checks the server's.
import { request } from 'node:https';
import { X509Source, authorizeId, createHttpsAgent } from 'sigil/client';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
const agent = createHttpsAgent({ source, authorizer: authorizeId(process.env.PEER_ID) });
try {
  const body = await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: Number(process.env.PORT), path: '/', agent }, (res) => {
      console.log(`server serial ${res.socket.getPeerX509Certificate().serialNumber}`);
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  process.stdout.write(body);
} catch (err) {
  console.log(`failed ${err.code ?? err.message}`);
  process.exitCode = 1;
} finally {
  agent.destroy();
  await source.close();
}
