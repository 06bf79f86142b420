#!/usr/bin/env node
// The `sigil` command: runs the compiled CLI (build first with `npm run build`).
import('../dist/src/cli/main.js').then(async (m) => { process.exitCode = await m.main(process.argv.slice(2)); }).catch((err) => {
  console.error(`sigil: ${err && err.code === 'ERR_MODULE_NOT_FOUND' ? 'not built yet: run `npm run build` first' : err}`);
  process.exitCode = 1;
});
