/** The client side of benchmark 7's floor: one SyncEntries call, counting entries until it has them all. */
import { credentials, Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { serviceClient } from '../../src/grpc/proto.js';
import type { BareSyncCommand, BareSyncReply } from './bare-sync.js';

function reply(r: BareSyncReply): void {
  process.send?.(r);
}

function sync(cmd: BareSyncCommand): Promise<bigint> {
  const Ctor = serviceClient('sigil/agent/v1/agent.proto', 'sigil.agent.v1.Agent');
  const pem = Buffer.from(cmd.tls.certPem);
  const client = new Ctor(cmd.target, credentials.createSsl(pem, Buffer.from(cmd.tls.keyPem), pem), {
    'grpc.ssl_target_name_override': 'sigil-server',
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
  });
  return new Promise<bigint>((resolve, reject) => {
    const call = (client as unknown as { SyncEntries(req: object, md: Metadata): ClientReadableStream<{ entries: unknown[] }> }).SyncEntries({ page_size: 0 }, new Metadata());
    let got = 0;
    const timer = setTimeout(() => reject(new Error(`bare sync: ${got} of ${cmd.entries} entries within ${cmd.timeoutMs} ms`)), cmd.timeoutMs);
    call.on('data', (m: { entries: unknown[] }) => {
      got += m.entries.length;
      if (got >= cmd.entries) {
        clearTimeout(timer);
        resolve(process.hrtime.bigint());
        call.cancel();
        client.close();
      }
    });
    call.on('error', (err: Error) => {
      if (got < cmd.entries) {
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

process.on('message', (m) => {
  void sync(m as BareSyncCommand).then(
    (at) => reply({ type: 'synced', at: at.toString() }),
    (err: unknown) => reply({ type: 'error', error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
reply({ type: 'ready' });
