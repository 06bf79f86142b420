/** Sigil's version, as `sigil --version` prints it and the admin API reports it (kept equal to package.json's by test/cli). */
export const SIGIL_VERSION = '0.1.0';
