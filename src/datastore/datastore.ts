/**
 * The datastore interface, implemented by SQLite (the embedded default) and PostgreSQL (several servers);
 * one conformance suite (test/datastore/conformance.ts) holds every implementation to it.
 * Records use plain strings for SPIFFE IDs (validated at the API edge) and epoch
 * milliseconds for times. No proto type ever reaches this layer.
 */
import type { Selector } from '../spiffe/selector.js';
import type { AuditFor, AuditTrailStore } from './audit-trail.js';

export type { AuditFor, AuditRecord, AuditTrailStore, StoredAuditRecord } from './audit-trail.js';

/** A registration entry: who (selectors under a parent) gets which SPIFFE ID. */
export interface RegistrationEntry {
  /** Server-assigned UUID. */
  readonly id: string;
  readonly spiffeId: string;
  readonly parentId: string;
  /** Normalised (sorted, unique); at least one. */
  readonly selectors: readonly Selector[];
  /** 0 = the server's default. */
  readonly x509SvidTtlSeconds: number;
  /** 0 = the server's default. */
  readonly jwtSvidTtlSeconds: number;
  readonly dnsNames: readonly string[];
  /** Trust domain IDs (`spiffe://other.org`) whose bundles the workload also gets. */
  readonly federatesWith: readonly string[];
  readonly admin: boolean;
  readonly downstream: boolean;
  readonly hint: string;
  /** Epoch ms after which the entry is no longer served; 0 = never. */
  readonly entryExpiresAt: number;
  /** Bumped on every update. */
  readonly revision: number;
  readonly createdAt: number;
}

/** The fields a caller supplies to create an entry (id, revision, createdAt are assigned). */
export type NewRegistrationEntry = Omit<RegistrationEntry, 'id' | 'revision' | 'createdAt'> & { readonly id?: string };

/** How a selector filter matches an entry's selectors. */
export type SelectorMatch = 'exact' | 'subset' | 'superset' | 'any';

/** Filters for listing and counting entries; all given ones must hold. */
export interface EntryFilter {
  readonly spiffeId?: string;
  readonly parentId?: string;
  /** Entries whose parent is any of these. */
  readonly parentIds?: readonly string[];
  readonly selectors?: { readonly selectors: readonly Selector[]; readonly match: SelectorMatch };
  /** Entries that federate with this trust domain ID. */
  readonly federatesWith?: string;
  readonly hint?: string;
  readonly downstream?: boolean;
}

/** A page request; `pageToken` is opaque, from the previous page. Size 0/absent = 500; larger than 10000 is clamped. */
export interface PageRequest {
  readonly pageSize?: number;
  readonly pageToken?: string;
}

/** A page of results; `nextPageToken` is empty on the last page. */
export interface Page<T> {
  readonly items: T[];
  readonly nextPageToken: string;
}

/** An agent that passed node attestation. */
export interface AttestedNode {
  readonly spiffeId: string;
  readonly attestationType: string;
  /** Serial (hex) of the agent's current SVID; '' once evicted. */
  readonly certSerial: string;
  readonly certNotAfter: number;
  /** Serial of an SVID issued but not yet confirmed in use by the agent (during renewal); ''. */
  readonly newCertSerial: string;
  readonly newCertNotAfter: number;
  readonly selectors: readonly Selector[];
  readonly banned: boolean;
  readonly canReattest: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Filters for listing agents. */
export interface NodeFilter {
  readonly banned?: boolean;
  readonly attestationType?: string;
  /** Agents whose certificate expires before this time (ms). */
  readonly expiresBefore?: number;
}

/** A join token as stored: only its hash, never the token itself. */
export interface JoinTokenRecord {
  /** Non-secret ID used in the agent's SPIFFE ID and in logs. */
  readonly tokenId: string;
  /** SHA-256 of the token, hex. */
  readonly tokenHash: string;
  readonly expiresAt: number;
  readonly createdAt: number;
  /**
   * '' while unspent; once an admission spent it, the SHA-256 (hex) of the SubjectPublicKeyInfo of
   * the agent key it admitted. Only that key may finish the attestation again (its answer may have
   * been lost), and only while the agent it admitted is still recorded and not banned.
   */
  readonly spentBy: string;
}

/** What admitting an attested agent writes, in one transaction. */
export interface AgentAdmission {
  /** The agent's record: created, or replacing the existing one (re-attestation). */
  readonly node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>;
  /** A join token the admission spends, bound to the admitted agent key (SHA-256 hex of its SPKI). */
  readonly joinToken?: { readonly tokenHash: string; readonly agentKey: string };
}

/** A trust bundle as stored: the SPIFFE bundle document (JWKS JSON) for one trust domain. */
export interface BundleRecord {
  /** Trust domain ID, `spiffe://example.org`. */
  readonly trustDomainId: string;
  /** The SPIFFE bundle document (JWKS with spiffe_sequence, spiffe_refresh_hint). */
  readonly document: string;
  readonly updatedAt: number;
}

/** One server's CA journal. */
export interface CaJournalRecord {
  /** The owning server's ID; '' for a journal written before servers had IDs. */
  readonly serverId: string;
  readonly journal: Uint8Array;
  readonly updatedAt: number;
}

/** How a peer's bundle endpoint is authenticated (SPIFFE Trust Domain and Bundle, section 5). */
export type FederationProfile = 'https_web' | 'https_spiffe';

/** The operator's side of a federation relationship: where the peer publishes its bundle. */
export interface FederationRelationshipFields {
  /** The peer's trust domain ID, `spiffe://other.org`. */
  readonly trustDomainId: string;
  /** https URL of the peer's bundle endpoint. */
  readonly bundleEndpointUrl: string;
  readonly profile: FederationProfile;
  /** https_spiffe: the SPIFFE ID the endpoint must present; '' for https_web. */
  readonly endpointSpiffeId: string;
}

/** A federation relationship as stored, with the refresher's state. */
export interface FederationRelationship extends FederationRelationshipFields {
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Epoch ms of the last fetch attempt (0 = never). */
  readonly lastAttemptAt: number;
  /** Epoch ms of the last fetch whose bundle was accepted (0 = never). */
  readonly lastSuccessAt: number;
  /** Why the last attempt failed; '' after a success. Never a secret (endpoint answers are public). */
  readonly lastError: string;
  /** `spiffe_sequence` of the last accepted bundle (0 = none or absent). */
  readonly lastSequence: number;
  /** Failed attempts since the last success (drives the backoff). */
  readonly consecutiveFailures: number;
  /** Epoch ms when the next fetch is due. */
  readonly nextRefreshAt: number;
}

/** The outcome of one fetch, recorded by the refresher that holds the relationship's lease. */
export interface FederationRefreshOutcome {
  readonly at: number;
  readonly nextRefreshAt: number;
  /** Present on success: the accepted bundle, stored as the peer's bundle in the same transaction. */
  readonly accepted?: { readonly document: string; readonly sequence: number };
  /** Present on failure. */
  readonly error?: string;
}

/** One change to the entries, in the order it happened (for push sync and, later, several servers). */
export interface EntryEvent {
  /** Monotonic, increasing. */
  readonly eventId: number;
  readonly entryId: string;
  readonly kind: 'created' | 'updated' | 'deleted';
  readonly at: number;
}

/**
 * The storage behind the server. Every method may throw SigilError (ERR_NOT_FOUND, ERR_ALREADY_EXISTS, ERR_INVALID_ARGUMENT, ERR_UNAVAILABLE).
 * A write that takes `audit` stores the record it makes in the same transaction, only when the change is made (src/datastore/audit-trail.ts).
 */
export interface Datastore extends AuditTrailStore {
  // registration entries
  createEntry(entry: NewRegistrationEntry): Promise<RegistrationEntry>;
  /** Creates many entries in one transaction (all or none), in order; same rules as createEntry. */
  createEntries(entries: readonly NewRegistrationEntry[]): Promise<RegistrationEntry[]>;
  /** Creates an entry unless one with the same (spiffeId, parentId, selectors) exists; returns which. */
  createEntryIfNotExists(entry: NewRegistrationEntry, audit?: AuditFor<RegistrationEntry>): Promise<{ entry: RegistrationEntry; created: boolean }>;
  getEntry(id: string): Promise<RegistrationEntry | undefined>;
  /** The entries with these IDs (duplicates ignored; unknown IDs are absent from the map), read in one transaction. */
  getEntries(ids: readonly string[]): Promise<Map<string, RegistrationEntry>>;
  /** Replaces the mutable fields; bumps `revision`. ERR_NOT_FOUND when absent. */
  updateEntry(entry: Omit<RegistrationEntry, 'revision' | 'createdAt'>, audit?: AuditFor<RegistrationEntry>): Promise<RegistrationEntry>;
  /** Deletes and returns the entry; ERR_NOT_FOUND when absent. */
  deleteEntry(id: string, audit?: AuditFor<RegistrationEntry>): Promise<RegistrationEntry>;
  listEntries(filter?: EntryFilter, page?: PageRequest): Promise<Page<RegistrationEntry>>;
  /**
   * Every entry whose parent is one of `parentIds` (duplicates ignored), unpaged and in no set
   * order, read in one transaction through the parent index: the cost follows the parents
   * and their children, not the size of the table (an agent's authorised set, level by level).
   */
  listEntriesByParentIds(parentIds: readonly string[]): Promise<RegistrationEntry[]>;
  /**
   * Every entry whose SPIFFE ID starts with `prefix` (compared byte for byte, case-sensitive),
   * unpaged and in no set order, read in one statement through the SPIFFE ID index: the cost
   * follows the matching entries, not the size of the table (the start-up scan for reserved
   * IDs). `prefix` is 1 to 2048 printable ASCII characters (SPIFFE IDs are ASCII), else
   * ERR_INVALID_ARGUMENT `invalid-filter`.
   */
  listEntriesBySpiffeIdPrefix(prefix: string): Promise<RegistrationEntry[]>;
  countEntries(filter?: EntryFilter): Promise<number>;
  /** Events with eventId > afterEventId, oldest first, at most `limit`. */
  listEntryEvents(afterEventId: number, limit?: number): Promise<EntryEvent[]>;
  /** The newest event ID (0 when none). */
  latestEntryEventId(): Promise<number>;
  /** Deletes events older than `beforeMs`, except the newest (so latestEntryEventId never goes back); returns how many. */
  pruneEntryEvents(beforeMs: number): Promise<number>;

  // attested nodes
  createAttestedNode(node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>, audit?: AuditFor<AttestedNode>): Promise<AttestedNode>;
  getAttestedNode(spiffeId: string): Promise<AttestedNode | undefined>;
  /** Replaces the node's mutable fields; ERR_NOT_FOUND when absent. */
  updateAttestedNode(node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>, audit?: AuditFor<AttestedNode>): Promise<AttestedNode>;
  deleteAttestedNode(spiffeId: string, audit?: AuditFor<AttestedNode>): Promise<AttestedNode>;
  listAttestedNodes(filter?: NodeFilter, page?: PageRequest): Promise<Page<AttestedNode>>;
  countAttestedNodes(filter?: NodeFilter): Promise<number>;

  // join tokens
  createJoinToken(token: Omit<JoinTokenRecord, 'createdAt' | 'spentBy'>, audit?: AuditFor<JoinTokenRecord>): Promise<JoinTokenRecord>;
  /** The token with this hash, spent or not, one plain read; undefined when absent. Expired tokens are returned too: the caller checks `expiresAt`. */
  getJoinToken(tokenHash: string): Promise<JoinTokenRecord | undefined>;
  /**
   * Records an attested agent and spends its join token in one write transaction, so a token is
   * spent if and only if the agent it admitted is recorded. `signal` (the caller's call) is checked
   * just before commit: once it has fired nothing is written and this rejects with its reason.
   * A token already spent by the same key may be spent again (the first answer was lost) while
   * its agent is recorded and not banned. Refusals: ERR_NOT_FOUND `join-token-unknown` (absent,
   * spent by another key, or its agent evicted), ERR_FAILED_PRECONDITION `agent-banned`.
   * `audit`, when given, is committed in the same transaction as the node.
   */
  admitAttestedNode(admission: AgentAdmission, signal?: AbortSignal, audit?: AuditFor<AttestedNode>): Promise<AttestedNode>;
  listJoinTokens(): Promise<JoinTokenRecord[]>;
  pruneJoinTokens(beforeMs: number): Promise<number>;

  // bundles (own and federated)
  getBundle(trustDomainId: string): Promise<BundleRecord | undefined>;
  /** Creates or replaces. */
  setBundle(trustDomainId: string, document: string, audit?: AuditFor<BundleRecord>): Promise<BundleRecord>;
  /** ERR_NOT_FOUND when there is no bundle for the trust domain. */
  deleteBundle(trustDomainId: string, audit?: AuditFor<string>): Promise<void>;
  listBundles(): Promise<BundleRecord[]>;

  /**
   * Read-modify-write of a bundle under the write lock (so servers sharing the database never
   * overwrite each other's changes): `merge` sees the stored bundle and every server's CA journal
   * of the trust domain, and returns the new document, or undefined to leave the stored one.
   */
  mergeBundle(
    trustDomainId: string,
    merge: (current: BundleRecord | undefined, journals: readonly CaJournalRecord[]) => string | undefined,
  ): Promise<{ record: BundleRecord | undefined; changed: boolean }>;

  // CA journals: each server's opaque CA state (key IDs, certificates, phases); never private keys
  getCaJournal(trustDomainId: string, serverId: string): Promise<Uint8Array | undefined>;
  setCaJournal(trustDomainId: string, serverId: string, journal: Uint8Array, audit?: AuditFor<string>): Promise<void>;
  /**
   * Reads server `serverId`'s journal and writes what `update` makes of it, in one write
   * transaction under the write lock, so two servers changing one journal never lose a write;
   * `update` returning undefined writes nothing. `update` must be synchronous and may run again
   * when the transaction is retried. Returns whether it wrote; `audit` commits with the write.
   */
  updateCaJournal(
    trustDomainId: string,
    serverId: string,
    update: (current: Uint8Array | undefined) => Uint8Array | undefined,
    audit?: AuditFor<string>,
  ): Promise<boolean>;
  /** ERR_NOT_FOUND (reason `journal-not-found`) when the server has no journal. */
  deleteCaJournal(trustDomainId: string, serverId: string): Promise<void>;
  /** Every server's journal of the trust domain, sorted by server ID. */
  listCaJournals(trustDomainId: string): Promise<CaJournalRecord[]>;

  /**
   * Calls `listener` soon after any process commits a change of entries (`entries`) or of
   * bundles and CA journals (`bundles`), where the database can tell other processes
   * (PostgreSQL LISTEN/NOTIFY). A hint only: one may be lost or late, so readers keep their
   * cursors (the entry event log) as the source of truth and a lost one costs latency only.
   * SQLite (one server) never calls it. Resolves to the unsubscribe function.
   */
  watchChanges(listener: (change: DatastoreChange) => void): Promise<() => void>;

  // federation relationships (the peer's bundle itself lives with the bundles)
  /** ERR_ALREADY_EXISTS (reason `federation-exists`) when the trust domain has one. */
  createFederationRelationship(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship>;
  getFederationRelationship(trustDomainId: string): Promise<FederationRelationship | undefined>;
  /** Every relationship, sorted by trust domain ID. */
  listFederationRelationships(): Promise<FederationRelationship[]>;
  /** Replaces the operator's fields and makes a fetch due now; ERR_NOT_FOUND (reason `federation-not-found`) when absent. */
  updateFederationRelationship(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship>;
  /** Deletes and returns the relationship (the peer's bundle stays); ERR_NOT_FOUND when absent. */
  deleteFederationRelationship(trustDomainId: string, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship>;
  /**
   * Takes the relationship's fetch lease for `holder` until `leaseUntil` when its fetch is due
   * (or `force`) and no other holder's lease is live; true when taken. Several servers on one
   * datastore so fetch each peer one at a time.
   */
  claimFederationRefresh(trustDomainId: string, holder: string, now: number, leaseUntil: number, force?: boolean): Promise<boolean>;
  /**
   * Records a fetch and releases the lease, storing an accepted bundle in the same transaction;
   * false (nothing written) when `holder` no longer holds the lease or the relationship is gone.
   */
  recordFederationRefresh(trustDomainId: string, holder: string, outcome: FederationRefreshOutcome): Promise<boolean>;

  close(): Promise<void>;
}

/** What watchChanges tells. */
export type DatastoreChange = 'entries' | 'bundles';
