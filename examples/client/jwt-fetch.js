// Fetches a JWT-SVID for AUDIENCE and prints it (a real service would send it in a header).
import { JwtSource } from 'sigil/client';

// SVID_HINT picks our identity by its hint when the workload has several (e.g. one uid, several services).
const source = await JwtSource.create(process.env.SVID_HINT ? { hint: process.env.SVID_HINT } : {});
const svid = await source.fetchJwtSvid({ audience: process.env.AUDIENCE });
console.log(svid.marshal());
await source.close();
