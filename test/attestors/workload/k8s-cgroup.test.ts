/**
 * The cgroup parser of the k8s attestor against recorded `/proc/<pid>/cgroup` files, one per
 * runtime, cgroup driver, cgroup version, QoS class and nesting (fixtures named after what they
 * are), plus the shapes that name no workload container.
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isSigilError } from '../../../src/common/errors.js';
import { parseCgroupFile, podContainerOfPath } from '../../../attestors/workload/k8s/cgroup-path.js';

// Fixtures stay in the source tree (dist/test/… → test/…).
const FIXTURES = fileURLToPath(new URL('../../../../test/attestors/workload/k8s-fixtures/', import.meta.url));
const fixture = (name: string): string => readFileSync(FIXTURES + name, 'utf8');

const POD = '3f1a9c2e-7b4d-4e21-9a8f-5c6d7e8f9a0b';
const STATIC_POD = '7f3e2d1c0b9a88776655443322110ffe';
const CONTAINER = `${'a'.repeat(8)}${'0123456789abcdef'.repeat(3)}${'b'.repeat(8)}`;

const inPod: [string, string][] = [
  ['cgroupfs-v1-docker-burstable.txt', POD],
  ['cgroupfs-v1-containerd-besteffort.txt', POD],
  ['cgroupfs-v1-guaranteed.txt', POD],
  ['systemd-v1-docker-burstable.txt', POD],
  ['systemd-v1-crio-besteffort.txt', POD],
  ['systemd-v1-containerd-guaranteed.txt', POD],
  ['cgroup-v2-systemd-containerd-burstable.txt', POD],
  ['cgroup-v2-systemd-crio-guaranteed.txt', POD],
  ['cgroup-v2-cgroupfs-containerd-besteffort.txt', POD],
  ['cgroup-v2-k3s-cgroupfs.txt', POD],
  ['cgroup-v2-process-in-sub-cgroup-of-container.txt', POD],
  ['kind-v1-nested-in-docker.txt', POD],
  ['kind-v2-systemd-kubelet-slice.txt', POD],
  ['static-pod-cgroupfs-v1.txt', STATIC_POD],
];

for (const [name, podUid] of inPod) {
  test(`a process in a pod: ${name}`, (t) => {
    t.deepEqual(parseCgroupFile(fixture(name)), { podUid, containerId: CONTAINER });
  });
}

const notInPod = [
  'crio-conmon-v1.txt',
  'pod-level-only-v1.txt',
  'host-process-v1.txt',
  'host-process-v2.txt',
  'private-cgroup-namespace-v2.txt',
  'docker-container-not-k8s-v1.txt',
  'systemd-scope-without-runtime-prefix-v1.txt',
  'malformed-uid-v1.txt',
];

for (const name of notInPod) {
  test(`no pod container: ${name}`, (t) => {
    t.is(parseCgroupFile(fixture(name)), undefined);
  });
}

test('two hierarchies naming different containers are refused as ambiguous', (t) => {
  const err = t.throws(() => parseCgroupFile(fixture('two-containers-ambiguous-v1.txt')));
  t.true(isSigilError(err) && err.code === 'ERR_ATTESTATION_FAILED' && err.reason === 'cgroup-ambiguous');
});

test('every fixture is covered by a case above', (t) => {
  const covered = new Set([...inPod.map(([n]) => n), ...notInPod, 'two-containers-ambiguous-v1.txt']);
  t.deepEqual(readdirSync(FIXTURES).filter((n) => !covered.has(n)), []);
});

test('single paths: the innermost pod level wins, upper-case or short IDs are no container', (t) => {
  t.deepEqual(podContainerOfPath(`/kubepods/pod${POD}/kubepods/besteffort/pod${STATIC_POD}/${CONTAINER}`), { podUid: STATIC_POD, containerId: CONTAINER });
  t.is(podContainerOfPath(`/kubepods/besteffort/pod${POD}/${CONTAINER.toUpperCase()}`), undefined);
  t.is(podContainerOfPath(`/kubepods/besteffort/pod${POD}/${CONTAINER.slice(1)}`), undefined);
  t.is(podContainerOfPath(`/kubepods/besteffort/pod${POD}/docker-${CONTAINER}`), undefined);
  t.is(podContainerOfPath(''), undefined);
  t.is(podContainerOfPath('/'), undefined);
});
