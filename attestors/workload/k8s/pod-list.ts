/**
 * The part of the kubelet's `/pods` answer (a core/v1 PodList) the k8s attestor reads, checked
 * against a schema before use: the kubelet is reached over the network, and whatever it sends
 * is input. Unknown fields are ignored; a pod without a UID is skipped.
 */
import { z } from 'zod';
import { SigilError } from '../../../src/common/errors.js';

const containerStatusSchema = z.object({
  name: z.string(),
  image: z.string().default(''),
  imageID: z.string().default(''),
  /** `<runtime>://<id>`; empty while the container is being created. */
  containerID: z.string().optional(),
});

const podSchema = z.object({
  metadata: z.object({
    name: z.string().default(''),
    namespace: z.string().default(''),
    uid: z.string().default(''),
    labels: z.record(z.string(), z.string()).default({}),
    ownerReferences: z.array(z.object({ kind: z.string(), name: z.string(), uid: z.string() })).default([]),
  }),
  spec: z.object({ serviceAccountName: z.string().default(''), nodeName: z.string().default('') }).default({ serviceAccountName: '', nodeName: '' }),
  status: z
    .object({
      containerStatuses: z.array(containerStatusSchema).default([]),
      initContainerStatuses: z.array(containerStatusSchema).default([]),
      ephemeralContainerStatuses: z.array(containerStatusSchema).default([]),
    })
    .default({ containerStatuses: [], initContainerStatuses: [], ephemeralContainerStatuses: [] }),
});

const podListSchema = z.object({ items: z.array(podSchema).default([]) });

/** One pod as the attestor sees it. */
export type Pod = z.output<typeof podSchema>;
/** One container's status inside a pod. */
export type ContainerStatus = z.output<typeof containerStatusSchema>;

/** Parses a `/pods` body into pods by UID; throws ERR_UNAVAILABLE (`kubelet-response`) when it is no PodList. */
export function parsePodList(body: string): Map<string, Pod> {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw new SigilError('ERR_UNAVAILABLE', 'the kubelet answered /pods with something that is not JSON', { reason: 'kubelet-response', cause: err });
  }
  const parsed = podListSchema.safeParse(json);
  if (!parsed.success) {
    const where = parsed.error.issues[0]?.path.join('.') ?? '';
    throw new SigilError('ERR_UNAVAILABLE', `the kubelet answered /pods with no valid pod list (at ${where || 'the top'})`, { reason: 'kubelet-response' });
  }
  const pods = new Map<string, Pod>();
  for (const pod of parsed.data.items) if (pod.metadata.uid !== '') pods.set(pod.metadata.uid, pod);
  return pods;
}

/** The runtime ID in a status's `containerID` (`containerd://<id>`), or undefined. */
function runtimeIdOf(status: ContainerStatus): string | undefined {
  const id = status.containerID;
  if (id === undefined || id === '') return undefined;
  const sep = id.indexOf('://');
  return sep === -1 ? undefined : id.slice(sep + 3);
}

/** The status of the container with this runtime ID in the pod (app, init or ephemeral), or undefined. */
export function findContainer(pod: Pod, containerId: string): ContainerStatus | undefined {
  const all = [...pod.status.containerStatuses, ...pod.status.initContainerStatuses, ...pod.status.ephemeralContainerStatuses];
  return all.find((s) => runtimeIdOf(s) === containerId);
}
