/**
 * A promise-based client of the admin API over its Unix socket, used by the CLI commands
 * (and tests). Errors come back as SigilError with the server's code.
 */
import { resolve } from 'node:path';
import { credentials, Metadata, status as Status, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import { ERROR_CODE_METADATA_KEY, fromServiceError } from '../../grpc/status.js';
import { int32FieldProblems, serviceClient } from '../../grpc/proto.js';

/** The admin proto file, relative to proto/. */
const ADMIN_PROTO = 'sigil/admin/v1/admin.proto';

/**
 * The admin socket when neither `--socket`, `--config` nor SIGIL_ADMIN_SOCKET names one:
 * where the shipped deployments put it (deploy/systemd/server.yaml, the Kubernetes
 * server-config; test/cli checks they agree).
 */
export const DEFAULT_ADMIN_SOCKET = '/run/sigil-server/admin.sock';

/**
 * A failure grpc-js reports about the connection itself (no server, no permission, no
 * answer in time), as one plain sentence naming the socket; errors the server sent (they
 * carry Sigil's code) are kept as they are.
 */
export function connectionError(err: unknown, socketPath: string, timeoutMs: number): SigilError | undefined {
  const se = err as Partial<ServiceError> | undefined;
  if (se?.metadata?.get(ERROR_CODE_METADATA_KEY)[0] !== undefined) return undefined;
  const details = typeof se?.details === 'string' ? se.details : '';
  if (se?.code === Status.UNAVAILABLE) {
    if (/EACCES|EPERM/.test(details)) {
      return new SigilError('ERR_PERMISSION_DENIED', `no permission to open the admin socket ${socketPath} (run as its owner or a member of its group)`, { reason: 'admin-socket-permission', cause: err });
    }
    return new SigilError('ERR_UNAVAILABLE', `no server at ${socketPath} (is it running? set --socket)`, { reason: 'no-server', cause: err });
  }
  if (se?.code === Status.DEADLINE_EXCEEDED) {
    return new SigilError('ERR_DEADLINE_EXCEEDED', `the server at ${socketPath} did not answer within ${Math.round(timeoutMs / 1000)}s`, { reason: 'admin-timeout', cause: err });
  }
  return undefined;
}

type UnaryMethod = (req: unknown, cb: (err: ServiceError | null, res: unknown) => void) => void;

/** Calls admin API methods by service and method name. */
export class AdminClient {
  readonly #socketPath: string;
  /** The socket this client dials (absolute). */
  get socketPath(): string {
    return this.#socketPath;
  }
  readonly #clients = new Map<string, Client>();

  constructor(socketPath: string) {
    // grpc-js reads `unix://rel/x.sock` as host `rel`: always dial the absolute path.
    this.#socketPath = resolve(socketPath);
  }

  /** Calls `sigil.admin.v1.<service>/<method>` and resolves to the response message. */
  call<T = Record<string, unknown>>(service: string, method: string, request: object = {}, timeoutMs = 30_000): Promise<T> {
    let client = this.#clients.get(service);
    if (client === undefined) {
      const Ctor = serviceClient(ADMIN_PROTO, `sigil.admin.v1.${service}`);
      client = new Ctor(`unix://${this.#socketPath}`, credentials.createInsecure());
      this.#clients.set(service, client);
    }
    const fn = (client as unknown as Record<string, UnaryMethod>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no admin method ${service}.${method}`));
    const definition = (client.constructor as ServiceClientConstructor).service[method];
    const problems = definition === undefined ? [] : int32FieldProblems(ADMIN_PROTO, (definition as { requestType?: { type?: unknown } }).requestType ?? '', request);
    if (problems.length > 0) {
      // Sent as is, the encoder would wrap the number and the server would judge another one.
      return Promise.reject(new SigilError('ERR_INVALID_ARGUMENT', `${service}.${method}: ${problems.join('; ')}`, { reason: 'field-out-of-range' }));
    }
    const deadline = new Date(Date.now() + timeoutMs);
    return new Promise<T>((resolve, reject) => {
      (fn as (req: unknown, md: unknown, opts: unknown, cb: (err: ServiceError | null, res: unknown) => void) => void).call(
        client,
        request,
        new Metadata(),
        { deadline },
        (err: ServiceError | null, res: unknown) => (err ? reject(connectionError(err, this.#socketPath, timeoutMs) ?? fromServiceError(err)) : resolve(res as T)),
      );
    });
  }

  /** Calls a paged list method until `next_page_token` is empty and returns the items of every page's `field`. */
  async listAll<T>(service: string, method: string, field: string, request: object = {}): Promise<T[]> {
    const out: T[] = [];
    let pageToken = '';
    do {
      const r = await this.call<Record<string, unknown>>(service, method, { ...request, page_token: pageToken });
      out.push(...(r[field] as T[]));
      pageToken = r.next_page_token as string;
    } while (pageToken !== '');
    return out;
  }

  /** Closes every channel. */
  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}
