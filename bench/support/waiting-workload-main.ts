/**
 * A workload waiting for its identity (benchmark 6), run as its own uid: it calls
 * FetchX509SVID, and while the agent answers PermissionDenied (no entry yet) it calls again
 * every RETRY_MS. It tells its parent once it has been denied ('waiting') and the moment it
 * receives an X509SVIDResponse ('got', with the process.hrtime reading).
 */
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { serviceClient, WORKLOAD_HEADER, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';

/** How often a denied workload asks again (a fast poller, so the figure is Sigil's and not a client's backoff). */
export const RETRY_MS = 20;

const address = process.argv[2] ?? '';
const Ctor = serviceClient(WORKLOAD_PROTO, WORKLOAD_SERVICE);
const client = new Ctor(address, credentials.createInsecure());
let told = false;

function attempt(): void {
  const md = new Metadata();
  md.set(WORKLOAD_HEADER, 'true');
  const call = (client as unknown as { FetchX509SVID(req: object, md: Metadata): ClientReadableStream<{ svids: unknown[] }> }).FetchX509SVID({}, md);
  let done = false;
  call.on('data', (msg) => {
    if (done || msg.svids.length === 0) return;
    done = true;
    process.send?.({ type: 'got', at: process.hrtime.bigint().toString() });
    call.cancel();
  });
  call.on('error', (err: Error & { code?: number }) => {
    if (done) return;
    done = true;
    if (!told) {
      told = true;
      process.send?.({ type: 'waiting', code: err.code });
    }
    setTimeout(attempt, RETRY_MS);
  });
}

attempt();
process.on('disconnect', () => process.exit(0));
