/**
 * A fake kubelet for tests of the k8s attestor: a real HTTPS (or plain HTTP) server on
 * 127.0.0.1 serving `/pods` as a PodList built and validated with kubernetes-models, a test CA
 * for its certificate, a token file; and a way to put a real process into real pod cgroups.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PodList } from 'kubernetes-models/v1/PodList';
import { createCa, createLeaf } from '../../../helpers/pki.js';

export const POD_UID = '3f1a9c2e-7b4d-4e21-9a8f-5c6d7e8f9a0b';
export const CONTAINER = `${'a'.repeat(8)}${'0123456789abcdef'.repeat(3)}${'b'.repeat(8)}`;
export const TOKEN = 'test-kubelet-token-0123456789';

/** A pod list as the kubelet serves it, validated against the Kubernetes schema. */
export function podList(options: { readonly podUid?: string; readonly containerId?: string | null; readonly name?: string } = {}): string {
  const containerStatus = {
    name: 'api',
    image: 'registry.example/payments/api:1.4',
    imageID: 'registry.example/payments/api@sha256:' + 'e'.repeat(64),
    ready: true,
    restartCount: 0,
    ...(options.containerId === null ? {} : { containerID: `containerd://${options.containerId ?? CONTAINER}` }),
  };
  const list = new PodList({
    items: [
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: options.name ?? 'api-7d9f8-xk2p4',
          namespace: 'payments',
          uid: options.podUid ?? POD_UID,
          labels: { app: 'api', tier: 'backend' },
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'api-7d9f8', uid: '0c5e0d9a-1111-4222-8333-944445555666' }],
        },
        spec: { serviceAccountName: 'api', nodeName: 'node-1', containers: [{ name: 'api', image: 'registry.example/payments/api:1.4' }] },
        status: {
          phase: 'Running',
          initContainerStatuses: [{ name: 'migrate', image: 'registry.example/payments/migrate:2', imageID: '', ready: false, restartCount: 0, containerID: `containerd://${'d'.repeat(64)}` }],
          containerStatuses: [containerStatus],
        },
      },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'other', namespace: 'kube-system', uid: '99999999-8888-4777-8666-555555555555' }, spec: { containers: [{ name: 'x' }] } },
    ],
  });
  list.validate();
  return JSON.stringify(list.toJSON());
}

export const EXPECTED = [
  'k8s:ns:payments',
  'k8s:sa:api',
  'k8s:pod-name:api-7d9f8-xk2p4',
  `k8s:pod-uid:${POD_UID}`,
  'k8s:node-name:node-1',
  'k8s:pod-image-count:1',
  'k8s:pod-init-image-count:1',
  'k8s:pod-image:registry.example/payments/api:1.4',
  `k8s:pod-image:registry.example/payments/api@sha256:${'e'.repeat(64)}`,
  'k8s:pod-init-image:registry.example/payments/migrate:2',
  'k8s:pod-label:app:api',
  'k8s:pod-label:tier:backend',
  'k8s:pod-owner:ReplicaSet:api-7d9f8',
  'k8s:pod-owner-uid:ReplicaSet:0c5e0d9a-1111-4222-8333-944445555666',
  'k8s:container-name:api',
  'k8s:container-image:registry.example/payments/api:1.4',
  `k8s:container-image:registry.example/payments/api@sha256:${'e'.repeat(64)}`,
];

/** A fake kubelet: `/pods` for a bearer token, counting requests; the answer can change between them. */
export interface FakeKubelet {
  readonly port: number;
  readonly caFile: string;
  readonly tokenFile: string;
  requests: number;
  answer: (n: number) => { status: number; body: string };
  close(): Promise<void>;
}

export async function startKubelet(options: { readonly plain?: boolean } = {}): Promise<FakeKubelet> {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-kubelet-'));
  const ca = await createCa({ name: 'CN=kubelet-ca', id: null });
  const leaf = await createLeaf({ issuer: ca, subject: 'CN=node-1', uris: [], dns: ['localhost'] });
  writeFileSync(join(dir, 'ca.crt'), ca.pem);
  writeFileSync(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
  const fake: FakeKubelet = {
    port: 0,
    caFile: join(dir, 'ca.crt'),
    tokenFile: join(dir, 'token'),
    requests: 0,
    answer: () => ({ status: 200, body: podList() }),
    close: async () => undefined,
  };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url !== '/pods' || req.method !== 'GET') {
      res.writeHead(404).end();
      return;
    }
    if (options.plain !== true && req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end('Unauthorized');
      return;
    }
    fake.requests++;
    const a = fake.answer(fake.requests);
    res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body);
  };
  const server = options.plain === true ? createHttpServer(handler) : createHttpsServer({ cert: leaf.pem, key: leaf.key.pkcs8Pem }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  Object.assign(fake, {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  });
  return fake;
}

/** Places `pid` in the kubelet's layouts on a v1 hierarchy (cgroupfs) and the v2 one (systemd); returns the undo. */
export function placeInPod(pid: number, podUid: string, containerId: string): () => void {
  const v1 = `/sys/fs/cgroup/pids/kubepods/besteffort/pod${podUid}/${containerId}`;
  const uu = podUid.replaceAll('-', '_');
  const v2 = `/sys/fs/cgroup/unified/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uu}.slice/cri-containerd-${containerId}.scope`;
  const made: string[] = [];
  for (const [root, leaf] of [['/sys/fs/cgroup/pids', v1], ['/sys/fs/cgroup/unified', v2]] as const) {
    if (!existsSync(root)) continue;
    mkdirSync(leaf, { recursive: true });
    made.push(leaf);
    writeFileSync(join(leaf, 'cgroup.procs'), String(pid));
  }
  if (made.length === 0) throw new Error('no writable cgroup hierarchy at /sys/fs/cgroup/pids or /sys/fs/cgroup/unified');
  return () => {
    for (const leaf of made) {
      // Remove the levels we made, innermost first, once the process has left them.
      let dir = leaf;
      while (!['/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified'].includes(dir)) {
        try {
          rmdirSync(dir);
        } catch {
          break;
        }
        dir = dir.slice(0, dir.lastIndexOf('/'));
      }
    }
  };
}

