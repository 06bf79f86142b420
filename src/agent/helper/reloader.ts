/**
 * Tells the program using the helper's files that they changed: a signal to the pid in a
 * pid file (nginx: SIGHUP re-reads certificates without dropping connections), or a
 * command run without a shell. Failures are reported, never thrown past the helper loop.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SigilError } from '../../common/errors.js';
import type { HelperConfig } from './helper-config.js';

/** Performs the configured reload; rejects with a SigilError saying what failed. */
export async function reload(config: NonNullable<HelperConfig['reload']>, signal?: AbortSignal): Promise<void> {
  if (config.kind === 'signal') {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(config.pidFile, 'utf8').trim(), 10);
    } catch (err) {
      throw new SigilError('ERR_UNAVAILABLE', `cannot read pid file ${config.pidFile}`, { reason: 'pid-file', cause: err });
    }
    if (!Number.isSafeInteger(pid) || pid <= 1) throw new SigilError('ERR_FAILED_PRECONDITION', `pid file ${config.pidFile} holds no usable pid`, { reason: 'pid-file' });
    try {
      process.kill(pid, config.signal);
    } catch (err) {
      throw new SigilError('ERR_UNAVAILABLE', `cannot send ${config.signal} to process ${pid}`, { reason: 'signal-failed', cause: err });
    }
    return;
  }
  const [file, ...args] = config.command;
  await new Promise<void>((resolve, reject) => {
    execFile(file as string, args, { timeout: config.timeoutMs, ...(signal ? { signal } : {}) }, (err) => {
      if (err === null) resolve();
      else reject(new SigilError('ERR_UNAVAILABLE', `reload command ${file} failed`, { reason: 'reload-command-failed', cause: err }));
    });
  });
}
