// Validates a JWT-SVID read from stdin for AUDIENCE, offline, against the JWT bundles.
import { JwtSource } from 'sigil/client';

let token = '';
for await (const chunk of process.stdin) token += chunk;

const source = await JwtSource.create();
try {
  const svid = await source.validateJwtSvid(token.trim(), process.env.AUDIENCE);
  console.log(`valid ${svid.id} for ${svid.audience.join(',')}`);
} catch (err) {
  console.log(`invalid ${err.reason ?? err.message}`);
  process.exitCode = 1;
} finally {
  await source.close();
}
