/**
 * One sample of "entry create -> a waiting workload has its SVID" (benchmarks 6 and 9): a
 * workload process running as a uid of its own (so only its entry matches it) keeps asking an
 * agent's Workload API and is denied; once it has been denied, `create` makes its entry and
 * the time runs until that workload holds an X509SVIDResponse.
 */
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

type WorkloadMsg = { type: 'waiting'; code?: number } | { type: 'got'; at: string };

/** Milliseconds from just before `create` to the workload (uid `uid`, on the agent at `agentAddress`) holding its SVID. */
export async function waitingWorkloadLatency(agentAddress: string, uid: number, create: () => Promise<void>): Promise<number> {
  const child = fork(join(HERE, 'waiting-workload-main.js'), [agentAddress], { uid, gid: uid, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const messages: WorkloadMsg[] = [];
    let wake: (() => void) | undefined;
    child.on('message', (m) => {
      messages.push(m as WorkloadMsg);
      wake?.();
    });
    const next = async (type: WorkloadMsg['type'], timeoutMs: number): Promise<WorkloadMsg> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = messages.find((x) => x.type === type);
        if (m !== undefined) return m;
        if (child.exitCode !== null) throw new Error(`workload uid ${uid} exited with ${child.exitCode}`);
        if (Date.now() > deadline) throw new Error(`workload uid ${uid}: no '${type}' within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
    };
    await next('waiting', 20_000);
    const t0 = process.hrtime.bigint();
    await create();
    const got = (await next('got', 30_000)) as Extract<WorkloadMsg, { type: 'got' }>;
    return Number(BigInt(got.at) - t0) / 1e6;
  } finally {
    child.kill('SIGKILL');
  }
}
