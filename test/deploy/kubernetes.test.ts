/**
 * deploy/kubernetes: every manifest parses, validates against the Kubernetes API schema
 * (kubernetes-models, offline), and carries the fields Sigil relies on (checked with zod
 * schemas below); the ConfigMaps' configs load through the real config loaders; names
 * that refer to each other (volumes, ports, Service selectors, ConfigMaps) line up. The kubernetes-ha/
 * overlay (three servers on PostgreSQL) is applied here as kustomize would (its patches are
 * RFC 6902 JSON patches) and checked the same way, plus what running several servers needs.
 */
import test, { type ExecutionContext } from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { resolveServerConfig } from '../../src/server/config.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DIR = join(ROOT, 'deploy/kubernetes');
const UID = 10001;

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; file: string } & Record<string, unknown>;

/** The kinds the manifests may use, each with its schema-checking model. */
const MODELS: Record<string, (doc: unknown) => { validate(): void }> = {
  'v1/Namespace': (d) => new Namespace(d as never),
  'v1/ConfigMap': (d) => new ConfigMap(d as never),
  'v1/Service': (d) => new Service(d as never),
  'v1/ServiceAccount': (d) => new ServiceAccount(d as never),
  'apps/v1/StatefulSet': (d) => new StatefulSet(d as never),
  'apps/v1/DaemonSet': (d) => new DaemonSet(d as never),
  'rbac.authorization.k8s.io/v1/ClusterRole': (d) => new ClusterRole(d as never),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': (d) => new ClusterRoleBinding(d as never),
};
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding']);

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const manifests: Manifest[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return { ...(doc.toJS() as Manifest), file };
  }),
);
const find = (kind: string, name: string, among: readonly Manifest[] = manifests): Manifest | undefined => among.find((m) => m.kind === kind && m.metadata.name === name);

type PatchOp = { op: string; path: string; value?: unknown };

/** RFC 6902 `add` and `replace` (all kubernetes-ha/ uses) on a copy of `doc`; anything else, or a path that is not there, throws. */
function applyJsonPatch(doc: Manifest, ops: readonly PatchOp[]): Manifest {
  const out = structuredClone(doc);
  for (const op of ops) {
    if (op.op !== 'add' && op.op !== 'replace') throw new Error(`unsupported patch op ${op.op}`);
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop();
    if (last === undefined) throw new Error(`bad patch path ${op.path}`);
    let cur: unknown = out;
    for (const part of parts) {
      cur = Array.isArray(cur) ? cur[Number(part)] : (cur as Record<string, unknown>)[part];
      if (cur === undefined || cur === null) throw new Error(`${op.path}: nothing at ${part}`);
    }
    if (Array.isArray(cur)) {
      if (last === '-') cur.push(op.value);
      else if (op.op === 'add') cur.splice(Number(last), 0, op.value);
      else cur[Number(last)] = op.value;
    } else {
      const obj = cur as Record<string, unknown>;
      if (op.op === 'replace' && !(last in obj)) throw new Error(`${op.path}: nothing to replace`);
      obj[last] = op.value;
    }
  }
  return out;
}

const HA_DIR = join(ROOT, 'deploy/kubernetes-ha');
const haKustomization = parseYaml(readFileSync(join(HA_DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[]; patches: { target: { kind: string; name: string }; path: string }[] };
const haManifests: Manifest[] = manifests.map((m) =>
  haKustomization.patches
    .filter((p) => p.target.kind === m.kind && p.target.name === m.metadata.name)
    .reduce((doc, p) => applyJsonPatch(doc, parseYaml(readFileSync(join(HA_DIR, p.path), 'utf8')) as PatchOp[]), m),
);

// --- zod schemas of the fields Sigil relies on (the API schema allows much more) ---
const hardenedContainer = z.object({
  name: z.string(),
  image: z.string().regex(/^sigil:/),
  securityContext: z.object({
    allowPrivilegeEscalation: z.literal(false),
    readOnlyRootFilesystem: z.literal(true),
    capabilities: z.object({ drop: z.tuple([z.literal('ALL')]), add: z.array(z.string()).optional() }),
  }),
  volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string(), readOnly: z.boolean().optional() })),
});
const mainContainer = hardenedContainer.extend({ args: z.tuple([z.enum(['server', 'agent']), z.literal('run'), z.literal('--config'), z.string()]) });
const volume = z.object({
  name: z.string(),
  configMap: z.object({ name: z.string() }).optional(),
  secret: z.object({ secretName: z.string() }).optional(),
  hostPath: z.object({ path: z.string(), type: z.string() }).optional(),
  emptyDir: z.object({}).passthrough().optional(),
  projected: z
    .object({
      sources: z.array(
        z.object({
          serviceAccountToken: z.object({ path: z.string(), audience: z.string().optional(), expirationSeconds: z.number().int() }).optional(),
          configMap: z.object({ name: z.string() }).passthrough().optional(),
        }),
      ),
    })
    .optional(),
});
const podSpec = z.object({
  serviceAccountName: z.string(),
  automountServiceAccountToken: z.literal(false),
  containers: z.tuple([mainContainer]),
  initContainers: z.array(hardenedContainer).optional(),
  volumes: z.array(volume),
});
const statefulSet = z.object({
  spec: z.object({
    replicas: z.number().int().min(1),
    serviceName: z.string(),
    selector: z.object({ matchLabels: z.record(z.string(), z.string()) }),
    template: z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()) }), spec: podSpec.extend({ securityContext: z.object({ runAsNonRoot: z.literal(true), runAsUser: z.literal(UID) }).passthrough() }) }),
    volumeClaimTemplates: z.array(z.object({ metadata: z.object({ name: z.string() }) })).min(1),
  }),
});
const daemonSet = z.object({
  spec: z.object({
    selector: z.object({ matchLabels: z.record(z.string(), z.string()) }),
    template: z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()) }), spec: podSpec.extend({ hostPID: z.literal(true) }) }),
  }),
});

test('every manifest is a known kind that validates against the Kubernetes API schema', (t) => {
  t.true(manifests.length >= 6);
  for (const m of manifests) {
    const model = MODELS[`${m.apiVersion}/${m.kind}`];
    t.truthy(model, `${m.file}: unexpected ${m.apiVersion} ${m.kind}`);
    if (model === undefined) continue;
    const { file: _file, ...doc } = m;
    t.notThrows(() => model(doc).validate(), `${m.file}: ${m.kind} ${m.metadata.name}`);
    if (!CLUSTER_SCOPED.has(m.kind)) t.is(m.metadata.namespace, 'sigil', `${m.kind} ${m.metadata.name}`);
    else t.is(m.metadata.namespace, undefined, `${m.kind} ${m.metadata.name} is cluster-scoped`);
  }
});

test('kustomization.yaml lists every manifest file', (t) => {
  const k = parseYaml(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  t.deepEqual([...k.resources].sort(), [...files].sort());
});

test('no Secret is committed, RBAC grants exactly what attestation needs, no token is mounted implicitly', (t) => {
  t.deepEqual(manifests.filter((m) => m.kind === 'Secret' || m.kind === 'Role' || m.kind === 'RoleBinding').map((m) => `${m.kind} ${m.metadata.name}`), []);
  for (const m of manifests.filter((x) => x.kind === 'ServiceAccount')) t.is(m.automountServiceAccountToken, false, m.metadata.name);
  // The only secret any pod mounts is the KEK.
  const secrets = manifests.flatMap((m) => ((m.spec as { template?: { spec?: { volumes?: { secret?: { secretName: string } }[] } } } | undefined)?.template?.spec?.volumes ?? []).flatMap((v) => (v.secret ? [v.secret.secretName] : [])));
  t.deepEqual(secrets, ['sigil-kek']);
  // Every grant, as "service account: verbs resource": the agent reads its kubelet's pods, the
  // server reviews tokens and reads nodes; nothing else, nowhere else.
  const grants = manifests
    .filter((m) => m.kind === 'ClusterRoleBinding')
    .flatMap((b) => {
      const binding = b as unknown as { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
      const rules =
        binding.roleRef.name === 'system:auth-delegator'
          ? [{ resources: ['tokenreviews'], verbs: ['create'] }]
          : ((find('ClusterRole', binding.roleRef.name) as unknown as { rules?: { resources: string[]; verbs: string[] }[] } | undefined)?.rules ?? []);
      t.true(rules.length > 0, `${b.metadata.name}: role ${binding.roleRef.name} is not defined`);
      return binding.subjects.flatMap((s) => rules.map((r) => `${s.namespace}:${s.name}: ${r.verbs.join(',')} ${r.resources.join(',')}`));
    })
    .sort();
  t.deepEqual(grants, ['sigil:sigil-agent: get nodes/proxy', 'sigil:sigil-server: create tokenreviews', 'sigil:sigil-server: get nodes']);
});

function checkPod(t: ExecutionContext, m: Manifest, pod: z.infer<typeof podSpec>, among: readonly Manifest[] = manifests): void {
  const sa = find('ServiceAccount', pod.serviceAccountName, among);
  t.truthy(sa, `${m.metadata.name}: service account ${pod.serviceAccountName} is not defined`);
  const volumeNames = new Set(pod.volumes.map((v) => v.name));
  const claims = ((m.spec as { volumeClaimTemplates?: { metadata: { name: string } }[] }).volumeClaimTemplates ?? []).map((c) => c.metadata.name);
  for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
    for (const vm of c.volumeMounts) t.true(volumeNames.has(vm.name) || claims.includes(vm.name), `${c.name}: volume ${vm.name} is not defined`);
  }
  for (const v of pod.volumes) {
    // sigil-bundle is made by the operator from the server's bundle (deploy/README.md).
    if (v.configMap !== undefined && v.configMap.name !== 'sigil-bundle') t.truthy(find('ConfigMap', v.configMap.name, among), `ConfigMap ${v.configMap.name} is not defined`);
  }
}

/** The config file a container's `--config` names, read from the ConfigMap mounted there. */
function configOf(pod: z.infer<typeof podSpec>, among: readonly Manifest[] = manifests): unknown {
  const c = pod.containers[0];
  const path = c.args[3];
  const mount = c.volumeMounts.find((vm) => path.startsWith(`${vm.mountPath}/`));
  const cmName = pod.volumes.find((v) => v.name === mount?.name)?.configMap?.name;
  const cm = find('ConfigMap', cmName ?? '', among) as { data?: Record<string, string> } | undefined;
  const text = cm?.data?.[posix.relative(mount?.mountPath ?? '/', path)];
  if (text === undefined) throw new Error(`no ConfigMap key holds ${path}`);
  return parseYaml(text);
}

function mountedAt(pod: z.infer<typeof podSpec>, path: string): { volume: z.infer<typeof volume>; readOnly: boolean } | undefined {
  const c = pod.containers[0];
  const vm = c.volumeMounts.filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  const v = pod.volumes.find((x) => x.name === vm?.name);
  return vm === undefined ? undefined : { volume: v ?? { name: vm.name }, readOnly: vm.readOnly === true };
}

test('server: StatefulSet with a volume claim, a Service in front, its config loads and fits the mounts', (t) => {
  const m = find('StatefulSet', 'sigil-server');
  if (m === undefined) return t.fail('no StatefulSet sigil-server');
  const s = statefulSet.parse(m);
  t.is(s.spec.replicas, 1, 'SQLite: one replica (kubernetes-ha/ runs three on PostgreSQL)');
  const pod = s.spec.template.spec;
  checkPod(t, m, pod);
  t.like(s.spec.template.metadata.labels, s.spec.selector.matchLabels);
  const svc = find('Service', s.spec.serviceName) as { spec: { clusterIP?: string; selector: Record<string, string>; ports: { port: number; targetPort: string }[] } } | undefined;
  if (svc === undefined) return t.fail(`Service ${s.spec.serviceName} is not defined`);
  t.is(svc.spec.clusterIP, 'None', 'headless: its name resolves to every server pod');
  t.like(s.spec.template.metadata.labels, svc.spec.selector);
  const ports = (m.spec as { template: { spec: { containers: { ports: { name: string; containerPort: number }[] }[] } } }).template.spec.containers[0]?.ports ?? [];
  for (const p of svc.spec.ports) t.truthy(ports.find((cp) => cp.name === p.targetPort), `targetPort ${p.targetPort}`);

  const config = resolveServerConfig(configOf(pod), {}, '/');
  t.is(ports.find((p) => p.name === 'agent-api')?.containerPort, config.agentApi.port);
  t.is(ports.find((p) => p.name === 'health')?.containerPort, config.health?.port);
  // Data on the claim, the KEK on a memory volume filled by the init container from the Secret.
  t.true(s.spec.volumeClaimTemplates.some((c) => c.metadata.name === mountedAt(pod, config.dataDir)?.volume.name));
  const kek = mountedAt(pod, config.keyManager.kekFile ?? '');
  t.truthy(kek?.volume.emptyDir);
  const init = pod.initContainers?.find((c) => c.volumeMounts.some((vm) => vm.name === kek?.volume.name));
  t.truthy(init?.volumeMounts.some((vm) => pod.volumes.find((v) => v.name === vm.name)?.secret?.secretName === 'sigil-kek'));
  t.truthy(mountedAt(pod, config.adminApi.socketPath)?.volume.emptyDir);
});

test('agent: DaemonSet with hostPID, the socket directory on a hostPath, its config loads and fits the mounts', (t) => {
  const m = find('DaemonSet', 'sigil-agent');
  if (m === undefined) return t.fail('no DaemonSet sigil-agent');
  const d = daemonSet.parse(m);
  const pod = d.spec.template.spec;
  checkPod(t, m, pod);
  t.like(d.spec.template.metadata.labels, d.spec.selector.matchLabels);
  const main = (m.spec as { template: { spec: { containers: { securityContext: { runAsNonRoot?: boolean; runAsUser?: number } }[] } } }).template.spec.containers[0];
  t.is(main?.securityContext.runAsNonRoot, true);
  t.is(main?.securityContext.runAsUser, UID);

  const config = resolveAgentConfig(configOf(pod), {}, '/');
  const socket = mountedAt(pod, config.socketPath);
  t.is(socket?.volume.hostPath?.path, dirname(config.socketPath));
  t.false(socket?.readOnly);
  t.truthy(mountedAt(pod, config.dataDir)?.volume.hostPath, 'agent identity must survive pod restarts');
  t.truthy(mountedAt(pod, config.trustBundleFile)?.volume.configMap);
  // Node attestation: the projected token for the audience and cluster the server accepts,
  // from this DaemonSet's own service account.
  if (config.nodeAttestor.type !== 'k8s_psat') return t.fail(`agent attests with ${config.nodeAttestor.type}, not k8s_psat`);
  const { tokenFile } = config.nodeAttestor;
  const tokenVolume = mountedAt(pod, tokenFile);
  const projected = tokenVolume?.volume.projected?.sources.find((src) => src.serviceAccountToken?.path === posix.basename(tokenFile))?.serviceAccountToken;
  if (projected === undefined) return t.fail(`no projected token at ${tokenFile}`);
  t.true(tokenVolume?.readOnly);
  t.true(projected.expirationSeconds <= 3600, 'a short-lived token (JWKS mode accepts it until it expires)');
  const serverPod = statefulSet.parse(find('StatefulSet', 'sigil-server')).spec.template.spec;
  const serverConfig = resolveServerConfig(configOf(serverPod), {}, '/');
  const cluster = serverConfig.nodeAttestors.k8sPsat?.[config.nodeAttestor.cluster];
  if (cluster === undefined) return t.fail(`the server knows no cluster ${config.nodeAttestor.cluster}`);
  t.true(cluster.audience.includes(projected.audience ?? ''), `audience ${projected.audience}`);
  t.true(cluster.serviceAccountAllowList.includes(`${m.metadata.namespace}:${pod.serviceAccountName}`));
  // The server's TokenReview credential is mounted where its config reads it.
  if (cluster.keys.kind === 'token-review') {
    t.truthy(mountedAt(serverPod, cluster.keys.tokenFile)?.volume.projected, 'server TokenReview token');
    if (cluster.keys.caFile !== undefined) t.truthy(mountedAt(serverPod, cluster.keys.caFile)?.volume.projected, 'server API CA');
  }
  // The workload attestor: this node's kubelet, by the node name from the downward API,
  // with a token and CA mounted where the config reads them.
  const k8s = config.workloadAttestors.k8s;
  if (k8s === undefined || k8s.kubelet.kind !== 'secure') return t.fail('the k8s workload attestor uses the kubelet secure port');
  const env = (m.spec as { template: { spec: { containers: { env?: { name: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[] }[] } } }).template.spec.containers[0]?.env ?? [];
  t.is(env.find((e) => e.name === 'MY_NODE_NAME')?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
  t.truthy(mountedAt(pod, k8s.kubelet.tokenFile)?.volume.projected, 'kubelet token');
  if (k8s.kubelet.caFile !== undefined) t.truthy(mountedAt(pod, k8s.kubelet.caFile)?.volume.projected, 'kubelet CA');
  t.is((m.spec as { template: { spec: { hostNetwork?: boolean } } }).template.spec.hostNetwork, true, 'the kubelet is reached on the node');
  t.is(config.serverAddress.split(':')[0], `${find('Service', 'sigil-server')?.metadata.name}.sigil.svc.cluster.local`);
  // The probes reach the health endpoint the config opens, on the pod IP.
  const probed = (m.spec as { template: { spec: { containers: AgentProbes[] } } }).template.spec.containers[0];
  const health = probed?.ports?.find((p) => p.name === 'health');
  t.is(health?.containerPort, config.health?.port);
  t.is(config.health?.host, '0.0.0.0');
  t.deepEqual(probed?.livenessProbe?.httpGet, { path: '/live', port: 'health' });
  t.deepEqual(probed?.readinessProbe?.httpGet, { path: '/ready', port: 'health' });
});

interface AgentProbes {
  readonly ports?: readonly { readonly name: string; readonly containerPort: number }[];
  readonly livenessProbe?: { readonly httpGet?: { readonly path: string; readonly port: string } };
  readonly readinessProbe?: { readonly httpGet?: { readonly path: string; readonly port: string } };
}

test('kubernetes-ha/: builds on the base, patches only what exists, and every patched manifest validates', (t) => {
  t.deepEqual(haKustomization.resources, ['../kubernetes']);
  for (const p of haKustomization.patches) t.truthy(find(p.target.kind, p.target.name), `patch target ${p.target.kind} ${p.target.name}`);
  for (const m of haManifests) {
    const model = MODELS[`${m.apiVersion}/${m.kind}`];
    if (model === undefined) return t.fail(`${m.file}: unexpected ${m.apiVersion} ${m.kind}`);
    const { file: _file, ...doc } = m;
    t.notThrows(() => model(doc).validate(), `kubernetes-ha/: ${m.kind} ${m.metadata.name}`);
  }
  t.throws(() => applyJsonPatch(manifests[0] as Manifest, [{ op: 'replace', path: '/spec/nothing/here', value: 1 }]), { message: /nothing/ }, 'a patch of a missing path fails the test');
});

test('kubernetes-ha/: three servers on PostgreSQL with the password from the Secret sigil-postgres, each with its own volume; agents list them through the headless Service', (t) => {
  const m = find('StatefulSet', 'sigil-server', haManifests);
  if (m === undefined) return t.fail('no StatefulSet sigil-server');
  const s = statefulSet.parse(m);
  t.is(s.spec.replicas, 3);
  const pod = s.spec.template.spec;
  checkPod(t, m, pod, haManifests);
  const config = resolveServerConfig(configOf(pod, haManifests), {}, '/');
  const pg = config.datastore.postgres;
  if (config.datastore.type !== 'postgres' || pg === undefined) return t.fail(`datastore is ${config.datastore.type}`);
  t.notRegex(pg.connectionString, /\/\/[^@/]*:[^@/]*@/, 'no password in the connection string');
  t.is(config.serverId, undefined, 'each replica generates and keeps its own server ID in its data dir');
  // the data dir (keys, server ID) on a per-replica claim; the password through a 0600 copy
  t.true(s.spec.volumeClaimTemplates.some((c) => c.metadata.name === mountedAt(pod, config.dataDir)?.volume.name));
  const pw = mountedAt(pod, pg.passwordFile ?? '');
  t.truthy(pw?.volume.emptyDir, 'password on a memory volume');
  t.true(pw?.readOnly);
  const init = pod.initContainers?.find((c) => c.volumeMounts.some((vm) => vm.name === pw?.volume.name));
  t.truthy(init?.volumeMounts.some((vm) => pod.volumes.find((v) => v.name === vm.name)?.secret?.secretName === 'sigil-postgres'));
  const secrets = pod.volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []));
  t.deepEqual(secrets.sort(), ['sigil-kek', 'sigil-postgres']);
  // agents: the headless Service's name, which resolves to every ready replica
  const svc = find('Service', s.spec.serviceName, haManifests) as { metadata: { name: string }; spec: { clusterIP?: string } } | undefined;
  t.is(svc?.spec.clusterIP, 'None');
  const agentPod = daemonSet.parse(find('DaemonSet', 'sigil-agent', haManifests)).spec.template.spec;
  const agentConfig = resolveAgentConfig(configOf(agentPod, haManifests), {}, '/');
  t.deepEqual(agentConfig.serverAddresses, [`${svc?.metadata.name ?? ''}.sigil.svc.cluster.local:${config.agentApi.port}`]);
});
