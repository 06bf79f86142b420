/** Test helper: the code and reason of the SigilError a promise rejects with. */
import { SigilError } from '../../../src/common/errors.js';

/** Awaits `p` and returns the SigilError's code and reason; fails when it resolves or throws anything else. */
export async function rejectionOf(p: Promise<unknown>): Promise<{ code: string; reason?: string | undefined }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SigilError) return { code: err.code, reason: err.reason };
    throw err;
  }
  throw new Error('expected a rejection');
}

/** The reason of an ERR_ATTESTATION_FAILED rejection, or undefined when `p` resolves. */
export async function attestationReasonOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SigilError && err.code === 'ERR_ATTESTATION_FAILED') return err.reason;
    throw err;
  }
  return undefined;
}
