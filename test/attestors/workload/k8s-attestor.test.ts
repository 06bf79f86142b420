/**
 * The k8s workload attestor against a fake kubelet: a real HTTPS server on 127.0.0.1 whose
 * certificate comes from a test CA and whose `/pods` answer is a PodList built and validated
 * with kubernetes-models. As root, real processes are placed in real cgroups (a v1 hierarchy
 * in the kubelet's cgroupfs layout and the v2 hierarchy in its systemd layout), so the kernel
 * itself reports where they run; the failure cases read recorded cgroup files instead.
 */
import test from 'ava';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isSigilError } from '../../../src/common/errors.js';
import { formatSelector } from '../../../src/spiffe/selector.js';
import { K8sWorkloadAttestor, type K8sAttestorOptions } from '../../../attestors/workload/k8s/k8s-attestor.js';
import { createCa } from '../../helpers/pki.js';
import { CONTAINER, EXPECTED, POD_UID, TOKEN, placeInPod, podList, startKubelet, type FakeKubelet } from './support/fake-kubelet.js';
import { startSleeper } from '../../agent/workload-api/support/sleeper.js';

const AS_ROOT = process.getuid?.() === 0;
const rootOnly = AS_ROOT ? test : test.skip;
const FIXTURES = fileURLToPath(new URL('../../../../test/attestors/workload/k8s-fixtures/', import.meta.url));

function attestorFor(k: FakeKubelet, over: Partial<K8sAttestorOptions> = {}, cgroup = 'cgroupfs-v1-containerd-besteffort.txt'): K8sWorkloadAttestor {
  return new K8sWorkloadAttestor({
    kubelet: { kind: 'secure', port: k.port, caFile: k.caFile, tokenFile: k.tokenFile, skipVerification: false },
    pollRetryIntervalMs: 20,
    maxPollAttempts: 5,
    readCgroup: async () => readFileSync(FIXTURES + cgroup, 'utf8'),
    ...over,
  });
}

const peer = { pid: 1, uid: 0, gid: 0 };
const texts = (s: readonly { type: string; value: string }[]): string[] => s.map(formatSelector);

rootOnly('a real process in real pod cgroups gets every k8s selector of its pod and container', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  const p = await startSleeper();
  const undo = placeInPod(p.pid, POD_UID, CONTAINER);
  t.teardown(async () => {
    await p.stop();
    undo();
  });
  const attestor = new K8sWorkloadAttestor({ kubelet: { kind: 'secure', port: kubelet.port, caFile: kubelet.caFile, tokenFile: kubelet.tokenFile, skipVerification: false } });
  t.is(attestor.name, 'k8s');
  t.deepEqual(texts(await attestor.attest({ pid: p.pid, uid: 0, gid: 0 })).sort(), [...EXPECTED].sort());
  t.is(kubelet.requests, 1);
});

test('a process in no pod gets no k8s selectors and costs no kubelet request', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  const p = await startSleeper();
  t.teardown(() => p.stop());
  const attestor = new K8sWorkloadAttestor({ kubelet: { kind: 'secure', port: kubelet.port, caFile: kubelet.caFile, tokenFile: kubelet.tokenFile, skipVerification: false } });
  t.deepEqual(await attestor.attest({ pid: p.pid, uid: 0, gid: 0 }), []);
  t.deepEqual(await attestorFor(kubelet, {}, 'host-process-v2.txt').attest(peer), []);
  t.is(kubelet.requests, 0);
});

test('the attestor reads the selectors for each recorded cgroup shape of the same pod', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  for (const shape of ['systemd-v1-crio-besteffort.txt', 'cgroup-v2-systemd-containerd-burstable.txt', 'kind-v1-nested-in-docker.txt', 'cgroup-v2-k3s-cgroupfs.txt']) {
    t.deepEqual(texts(await attestorFor(kubelet, {}, shape).attest(peer)).sort(), [...EXPECTED].sort(), shape);
  }
});

test('a container not yet in the pod status is polled for until it appears', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  kubelet.answer = (n) => ({ status: 200, body: podList({ containerId: n < 3 ? null : CONTAINER }) });
  t.deepEqual(texts(await attestorFor(kubelet).attest(peer)).sort(), [...EXPECTED].sort());
  t.true(kubelet.requests >= 3);
});

test('a pod that never appears fails after maxPollAttempts reads with ERR_DEADLINE_EXCEEDED', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  kubelet.answer = () => ({ status: 200, body: podList({ podUid: '12345678-1234-4234-8234-123456789abc' }) });
  const err = await t.throwsAsync(attestorFor(kubelet, { maxPollAttempts: 3 }).attest(peer));
  t.true(isSigilError(err) && err.code === 'ERR_DEADLINE_EXCEEDED' && err.reason === 'pod-not-found', String(err));
  t.is(kubelet.requests, 3);
});

test('with container selectors disabled a known pod attests before its container is in the status', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  kubelet.answer = () => ({ status: 200, body: podList({ containerId: null }) });
  const selectors = texts(await attestorFor(kubelet, { disableContainerSelectors: true }).attest(peer));
  t.deepEqual(selectors.sort(), EXPECTED.filter((s) => !s.startsWith('k8s:container-')).sort());
  t.is(kubelet.requests, 1);
});

test('callers at the same time share one kubelet request', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  const attestor = attestorFor(kubelet, { pollRetryIntervalMs: 60_000 });
  const all = await Promise.all(Array.from({ length: 20 }, () => attestor.attest(peer)));
  t.true(all.every((s) => s.length === EXPECTED.length));
  t.is(kubelet.requests, 1);
});

const failures: [string, string][] = [
  ['a kubelet certificate from another CA', 'kubelet-unreachable'],
  ['a wrong token (HTTP 401)', 'kubelet-status'],
  ['an answer that is not JSON', 'kubelet-response'],
  ['an answer that is no pod list', 'kubelet-response'],
  ['a kubelet that is down', 'kubelet-unreachable'],
  ['a token file that is missing', 'kubelet-credentials'],
];

for (const [name, reason] of failures) {
  test(`kubelet failure: ${name} fails attestation with ERR_UNAVAILABLE (${reason})`, async (t) => {
    const kubelet = await startKubelet();
    t.teardown(() => kubelet.close());
    let over: Partial<K8sAttestorOptions> = {};
    const secure = { kind: 'secure' as const, port: kubelet.port, caFile: kubelet.caFile, tokenFile: kubelet.tokenFile, skipVerification: false };
    if (name.startsWith('a kubelet certificate')) {
      const other = await createCa({ name: 'CN=other-ca', id: null });
      const otherFile = join(tmpdir(), `sigil-other-ca-${process.pid}-${Date.now()}.pem`);
      writeFileSync(otherFile, other.pem);
      t.teardown(() => rmSync(otherFile, { force: true }));
      over = { kubelet: { ...secure, caFile: otherFile } };
    } else if (name.startsWith('a wrong token')) {
      const wrong = join(tmpdir(), `sigil-wrong-token-${process.pid}-${Date.now()}`);
      writeFileSync(wrong, 'not-the-token', { mode: 0o600 });
      t.teardown(() => rmSync(wrong, { force: true }));
      over = { kubelet: { ...secure, tokenFile: wrong } };
    } else if (name.includes('not JSON')) {
      kubelet.answer = () => ({ status: 200, body: '<html>' });
    } else if (name.includes('no pod list')) {
      kubelet.answer = () => ({ status: 200, body: JSON.stringify({ items: [{ metadata: { uid: 7 } }] }) });
    } else if (name.includes('down')) {
      // A port that was just free: nothing listens there.
      const probe = createHttpServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const port = (probe.address() as AddressInfo).port;
      await new Promise<void>((resolve) => probe.close(() => resolve()));
      over = { kubelet: { ...secure, port } };
    } else if (name.includes('token file')) {
      over = { kubelet: { ...secure, tokenFile: join(tmpdir(), 'sigil-no-such-token') } };
    }
    const err = await t.throwsAsync(attestorFor(kubelet, over).attest(peer));
    t.true(isSigilError(err) && err.code === 'ERR_UNAVAILABLE' && err.reason === reason, String(err));
    t.false(String(err).includes(TOKEN), 'the token never appears in an error');
  });
}

test('the kubelet host name is checked when a node name is configured', async (t) => {
  const kubelet = await startKubelet();
  t.teardown(() => kubelet.close());
  const base = { kind: 'secure' as const, port: kubelet.port, caFile: kubelet.caFile, tokenFile: kubelet.tokenFile, skipVerification: false };
  t.is((await attestorFor(kubelet, { kubelet: { ...base, nodeName: 'localhost' } }).attest(peer)).length, EXPECTED.length);
  // 127.0.0.1 as the node name is not in the certificate (it names only localhost).
  const err = await t.throwsAsync(attestorFor(kubelet, { kubelet: { ...base, nodeName: '127.0.0.1' } }).attest(peer));
  t.true(isSigilError(err) && err.reason === 'kubelet-unreachable', String(err));
});

test('the read-only port is read over plain HTTP without a token when configured', async (t) => {
  const kubelet = await startKubelet({ plain: true });
  t.teardown(() => kubelet.close());
  const selectors = await attestorFor(kubelet, { kubelet: { kind: 'read-only', port: kubelet.port } }).attest(peer);
  t.deepEqual(texts(selectors).sort(), [...EXPECTED].sort());
});

test('bad settings are config errors', (t) => {
  for (const over of [{ maxPollAttempts: 0 }, { pollRetryIntervalMs: 0 }]) {
    const err = t.throws(() => new K8sWorkloadAttestor({ kubelet: { kind: 'read-only', port: 1 }, ...over }));
    t.true(isSigilError(err) && err.code === 'ERR_CONFIG_INVALID', JSON.stringify(over));
  }
});
