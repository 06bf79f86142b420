// Validates a JWT-SVID read from stdin for AUDIENCE, offline, against the JWT bundles.
import { JwtSource } from 'sigil/client';

let token = '';
for await (const chunk of process.stdin) token += chunk;

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await JwtSource.create(process.env.SVID_HINT ? { hint: process.env.SVID_HINT } : {});
try {
  const svid = await source.validateJwtSvid(token.trim(), process.env.AUDIENCE);
  console.log(`valid ${svid.id} for ${svid.audience.join(',')}`);
} catch (err) {
  console.log(`invalid ${err.reason ?? err.message}`);
  process.exitCode = 1;
} finally {
  await source.close();
}
