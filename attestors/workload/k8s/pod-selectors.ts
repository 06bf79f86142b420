/**
 * The `k8s:` selectors of a workload, with SPIRE's names so entries carry over: pod facts
 * (`ns`, `sa`, `pod-name`, `pod-uid`, `node-name`, labels, owners, images) and the facts of the
 * workload's own container (`container-name`, `container-image`). Images are given twice, by
 * the name the pod asked for (`image`) and by the digest the runtime pulled (`imageID`), so an
 * entry can pin either.
 */
import { makeSelector, type Selector } from '../../../src/spiffe/selector.js';
import type { ContainerStatus, Pod } from './pod-list.js';

function k8s(value: string): Selector {
  return makeSelector('k8s', value);
}

function imagesOf(statuses: readonly ContainerStatus[]): string[] {
  const out = new Set<string>();
  for (const s of statuses) {
    if (s.image !== '') out.add(s.image);
    if (s.imageID !== '') out.add(s.imageID);
  }
  return [...out];
}

/** Selectors that describe the pod, whichever of its containers called. */
export function podSelectors(pod: Pod): Selector[] {
  const { metadata, spec, status } = pod;
  const out = [
    k8s(`ns:${metadata.namespace}`),
    k8s(`sa:${spec.serviceAccountName}`),
    k8s(`pod-name:${metadata.name}`),
    k8s(`pod-uid:${metadata.uid}`),
    k8s(`node-name:${spec.nodeName}`),
    k8s(`pod-image-count:${status.containerStatuses.length}`),
    k8s(`pod-init-image-count:${status.initContainerStatuses.length}`),
  ];
  for (const image of imagesOf(status.containerStatuses)) out.push(k8s(`pod-image:${image}`));
  for (const image of imagesOf(status.initContainerStatuses)) out.push(k8s(`pod-init-image:${image}`));
  for (const [key, value] of Object.entries(metadata.labels)) out.push(k8s(`pod-label:${key}:${value}`));
  for (const owner of metadata.ownerReferences) {
    out.push(k8s(`pod-owner:${owner.kind}:${owner.name}`), k8s(`pod-owner-uid:${owner.kind}:${owner.uid}`));
  }
  return out;
}

/** Selectors of the workload's own container. */
export function containerSelectors(container: ContainerStatus): Selector[] {
  return [k8s(`container-name:${container.name}`), ...imagesOf([container]).map((image) => k8s(`container-image:${image}`))];
}
