// Fetches a JWT-SVID for AUDIENCE and prints it (a real service would send it in a header).
import { JwtSource } from 'sigil/client';

const source = await JwtSource.create();
const svid = await source.fetchJwtSvid({ audience: process.env.AUDIENCE });
console.log(svid.marshal());
await source.close();
