// Calls the grpc-server example; the channel presents our SVID and accepts only PEER_ID.
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { X509Source, authorizeId, grpcChannelCredentials } from 'sigil/client';
import { greeterService } from './greeter.js';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await X509Source.create(process.env.SVID_HINT ? { picker: { hint: process.env.SVID_HINT } } : {});
const Greeter = makeGenericClientConstructor(greeterService, 'Greeter');
const client = new Greeter(`127.0.0.1:${process.env.PORT}`, grpcChannelCredentials({ source, authorizer: authorizeId(process.env.PEER_ID) }));
try {
  const reply = await new Promise((resolve, reject) => {
    const call = client.hello({}, { deadline: Date.now() + 5000 }, (err, res) => {
      if (err) return reject(err);
      console.log(`server serial ${call.getAuthContext()?.sslPeerCertificate?.serialNumber}`);
      resolve(res);
    });
  });
  console.log(reply.text);
} catch (err) {
  console.log(`failed ${err.code ?? err.message}`);
  process.exitCode = 1;
} finally {
  client.close();
  await source.close();
}
