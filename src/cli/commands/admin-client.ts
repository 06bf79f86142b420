/**
 * A promise-based client of the admin API over its Unix socket, used by the CLI commands
 * (and tests). Errors come back as SigilError with the server's code.
 */
import { resolve } from 'node:path';
import { credentials, Metadata, type Client, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { SigilError } from '../../common/errors.js';
import { fromServiceError } from '../../grpc/status.js';
import { int32FieldProblems, serviceClient } from '../../grpc/proto.js';

/** The admin proto file, relative to proto/. */
const ADMIN_PROTO = 'sigil/admin/v1/admin.proto';

/** Default admin socket path when neither flag nor config gives one. */
export const DEFAULT_ADMIN_SOCKET = '/tmp/sigil/server/admin.sock';

type UnaryMethod = (req: unknown, cb: (err: ServiceError | null, res: unknown) => void) => void;

/** Calls admin API methods by service and method name. */
export class AdminClient {
  readonly #socketPath: string;
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
        (err: ServiceError | null, res: unknown) => (err ? reject(fromServiceError(err)) : resolve(res as T)),
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
