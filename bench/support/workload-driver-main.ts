/** The child side of WorkloadDriver: gRPC Workload API clients, one connection each. */
import { credentials, Metadata, type Client, type ClientReadableStream } from '@grpc/grpc-js';
import { serviceClient, WORKLOAD_HEADER, WORKLOAD_PROTO, WORKLOAD_SERVICE } from '../../src/grpc/proto.js';
import type { DriverCommand, DriverReply } from './workload-driver.js';

const Ctor = serviceClient(WORKLOAD_PROTO, WORKLOAD_SERVICE);
// A private subchannel pool per client: otherwise grpc-js shares one connection between
// clients of the same target, and the server would see one workload instead of many.
const CLIENT_OPTIONS = { 'grpc.use_local_subchannel_pool': 1 };
const OPEN_CONCURRENCY = 64;

type Fetch = (req: object, md: Metadata) => ClientReadableStream<unknown>;

function reply(r: DriverReply): void {
  process.send?.(r);
}

function header(): Metadata {
  const md = new Metadata();
  md.set(WORKLOAD_HEADER, 'true');
  return md;
}

const INSECURE = credentials.createInsecure();

function newClient(address: string): Client {
  return new Ctor(address, INSECURE, CLIENT_OPTIONS);
}

/** One connection: connect, call, first message. Resolves with the elapsed ms. */
function once(address: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const client = newClient(address);
  return new Promise<number>((resolve, reject) => {
    const call = (client as unknown as { FetchX509SVID: Fetch }).FetchX509SVID({}, header());
    call.once('data', () => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      call.cancel();
      client.close();
      resolve(ms);
    });
    call.on('error', (err: Error & { code?: number }) => {
      client.close();
      if (err.code !== 1) reject(err); // 1 = CANCELLED, our own cancel
    });
  });
}

interface Stream {
  count: number;
  readonly client: Client;
  readonly call: ClientReadableStream<unknown>;
}

interface Group {
  readonly streams: Stream[];
  /** reached[n] = streams that have received at least n + 1 messages. */
  readonly reached: number[];
}

const groups = new Map<string, Group>();

async function openGroup(name: string, address: string, count: number): Promise<void> {
  const group: Group = { streams: [], reached: [] };
  groups.set(name, group);
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const openOne = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const client = newClient(address);
      const call = (client as unknown as { FetchX509SVID: Fetch }).FetchX509SVID({}, header());
      const s: Stream = { count: 0, client, call };
      call.on('data', () => {
        s.count++;
        if (s.count === 1) {
          group.streams.push(s);
          resolve();
          return;
        }
        const round = s.count - 1;
        group.reached[round] = (group.reached[round] ?? 0) + 1;
        if (group.reached[round] === group.streams.length) {
          reply({ type: 'round', group: name, round, lastAt: process.hrtime.bigint().toString() });
        }
      });
      call.on('error', (err: Error & { code?: number }) => {
        if (s.count === 0) {
          errors++;
          firstError ??= err.message;
          client.close();
          resolve();
        }
      });
    });
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, count) }, worker));
  reply({ type: 'opened', group: name, open: group.streams.length, errors, ...(firstError === undefined ? {} : { firstError }) });
}

function closeGroup(name: string): void {
  const g = groups.get(name);
  for (const s of g?.streams ?? []) {
    s.call.cancel();
    s.client.close();
  }
  groups.delete(name);
  reply({ type: 'closed', group: name });
}

process.on('message', (m) => {
  const cmd = m as DriverCommand;
  if (cmd.type === 'latency') {
    void (async () => {
      const samplesMs: number[] = [];
      let errors = 0;
      for (let i = 0; i < cmd.count; i++) {
        try {
          samplesMs.push(await once(cmd.address));
        } catch {
          errors++;
        }
      }
      reply({ type: 'latency', samplesMs, errors });
    })();
  } else if (cmd.type === 'open') {
    void openGroup(cmd.group, cmd.address, cmd.count);
  } else if (cmd.type === 'close') {
    closeGroup(cmd.group);
  }
});
process.on('disconnect', () => process.exit(0));
