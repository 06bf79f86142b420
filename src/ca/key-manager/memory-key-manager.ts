/** The `memory` key manager: keys live only in this process (tests, throwaway servers). */
import type { KeyManager, KeyType, ManagedKey } from '../../plugin/key-manager.js';
import { checkKeyId, generateKeyPairOfType, inMemoryManagedKey } from './key-gen.js';

/** Holds keys in a Map; everything is lost when the process exits. */
export class MemoryKeyManager implements KeyManager {
  readonly #keys = new Map<string, ManagedKey>();

  async generateKey(id: string, type: KeyType): Promise<ManagedKey> {
    checkKeyId(id);
    const { privateKey, publicKey } = await generateKeyPairOfType(type);
    const key = inMemoryManagedKey(id, type, privateKey, publicKey);
    this.#keys.set(id, key);
    return key;
  }

  async getKey(id: string): Promise<ManagedKey | undefined> {
    return this.#keys.get(id);
  }

  async listKeys(): Promise<ManagedKey[]> {
    return [...this.#keys.values()];
  }

  async deleteKey(id: string): Promise<void> {
    this.#keys.delete(id);
  }
}
