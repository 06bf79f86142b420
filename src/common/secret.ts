/**
 * A value that must never be printed: keys, tokens, KEKs, JWT-SVIDs. Redaction follows
 * the type, so JSON, util.inspect, template strings and pino all see `[redacted]`.
 */
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/** Holds a secret value; only `reveal()` gives it back. */
export class Secret<T> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  /** Returns the secret value itself; call only where it is used, never to log. */
  reveal(): T {
    return this.#value;
  }

  toJSON(): string {
    return REDACTED;
  }

  toString(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `Secret(${REDACTED})`;
  }
}
