/* global setTimeout */
// Shared bits of the two demo services: short serials for readable output, and a clean stop
// on SIGINT/SIGTERM, or (when `sigil demo` started us, SIGIL_DEMO_CHILD=1) when the demo goes
// away and our stdin pipe closes, so no service outlives its demo even if it was killed.

/** The last 8 hex digits of a serial number: enough to see it change. */
export function shortSerial(serial) {
  const s = String(serial).toUpperCase();
  return s.length > 8 ? `…${s.slice(-8)}` : s;
}

/** Runs `stop` once on SIGINT, SIGTERM or (under `sigil demo`) end of stdin, then exits. */
export function stopOn(stop) {
  let stopped = false;
  const run = () => {
    if (stopped) return;
    stopped = true;
    const force = setTimeout(() => process.exit(1), 5000);
    force.unref();
    Promise.resolve()
      .then(stop)
      .then(
        () => process.exit(0),
        (err) => {
          console.error(`stop failed: ${err.message}`);
          process.exit(1);
        },
      );
  };
  process.on('SIGINT', run);
  process.on('SIGTERM', run);
  if (process.env.SIGIL_DEMO_CHILD === '1') {
    process.stdin.on('end', run);
    process.stdin.on('error', run);
    process.stdin.resume();
  }
}
