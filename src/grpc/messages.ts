/**
 * TypeScript shapes of Sigil's proto messages as @grpc/proto-loader hands them over
 * (keepCase, defaults filled). 64-bit fields arrive as decimal strings (`longs: String`) but
 * may be sent as numbers, so the types take the int64 form as a parameter: `string` where a
 * message is received, `number` where one is built to send. Types only; they mirror
 * proto/sigil/agent/v1/agent.proto and proto/sigil/admin/v1/admin.proto.
 */

/** sigil.agent.v1.Selector (and sigil.admin.v1.Selector, the same fields). */
export interface SelectorMessage {
  type: string;
  value: string;
}

/** sigil.agent.v1.Entry: a registration entry on the agent API. */
export interface EntryMessage<Int64 extends string | number = string> {
  id: string;
  spiffe_id: string;
  parent_id: string;
  selectors: SelectorMessage[];
  x509_svid_ttl_seconds: number;
  jwt_svid_ttl_seconds: number;
  dns_names: string[];
  federates_with: string[];
  admin: boolean;
  downstream: boolean;
  hint: string;
  revision: Int64;
  expires_at: Int64;
}

/** sigil.admin.v1.Entry: the agent API's entry fields (other field numbers, same names) plus created_at. */
export interface AdminEntryMessage<Int64 extends string | number = string> extends EntryMessage<Int64> {
  created_at: Int64;
  /** Why the server never serves or signs this entry (a reserved SPIFFE ID); '' for an ordinary entry. Output only. */
  refused_reason: string;
}
