/**
 * A workload in a (simulated) pod gets the SVID of the entry with its `k8s:ns`/`k8s:sa`
 * selectors through the real server, the real agent with the k8s attestor configured, and the
 * Workload API: the workload is a real process that moves itself into the kubelet's cgroup
 * layout before it connects, so the agent learns its pod from the kernel, and the pod from a
 * fake kubelet over HTTPS. An entry for another namespace is not served to it.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { ROOT } from '../client/service-process.js';
import { CONTAINER, POD_UID, placeInPod, startKubelet } from '../attestors/workload/support/fake-kubelet.js';
import { startStack } from './support/stack.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test : test.skip;

const FETCH = `
const { X509Source } = await import(${JSON.stringify(join(ROOT, 'dist/src/client/index.js'))});
const source = await X509Source.create({ timeoutMs: 20000 });
for (const svid of source.context.svids) console.log('svid ' + svid.id.toString());
source.close();
`;

rootOnly('a process in a pod gets the SVID of its k8s:ns + k8s:sa entry through the real agent', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  const stack = await startStack({
    agentConfig: {
      workloadAttestors: {
        k8s: { kubeletSecurePort: kubelet.port, kubeletCaPath: kubelet.caFile, tokenPath: kubelet.tokenFile, pollRetryInterval: '50ms' },
      },
    },
  });
  t.teardown(() => stack.close());
  await stack.entry({ spiffeId: 'spiffe://example.org/payments/api', selectors: ['k8s:ns:payments', 'k8s:sa:api'] });
  await stack.entry({ spiffeId: 'spiffe://example.org/billing/api', selectors: ['k8s:ns:billing', 'k8s:sa:api'] });

  // The workload parks on a pipe until the test has put it in the pod's cgroups, then connects.
  const child = spawn(process.execPath, ['--input-type=module', '-e', `await new Promise((r) => process.stdin.once('data', r));${FETCH}`], {
    env: { PATH: process.env.PATH ?? '', SPIFFE_ENDPOINT_SOCKET: stack.address },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const undo = placeInPod(child.pid as number, POD_UID, CONTAINER);
  t.teardown(() => {
    child.kill('SIGKILL');
    undo();
  });
  child.stdin.end('go\n');
  const [code] = (await once(child, 'exit')) as [number | null];
  t.is(code, 0, out);
  t.deepEqual(out.trim().split('\n').filter((l) => l.startsWith('svid ')), ['svid spiffe://example.org/payments/api'], out);
  t.true(kubelet.requests >= 1);
});
